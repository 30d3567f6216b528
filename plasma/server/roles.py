"""Who may call what: every RPC of every Plasma service and the role it needs, in one table.

Two roles. A reader looks and uses: Get*, List*, Watch*, Export*/Download*, Subscribe, Simulate and
ForecastErrors (they compute from stored models and change nothing), Act and Control. An operator also changes
what the suite holds or runs: collects, uploads, fits, trains, compiles, starts and cancels, loads and rolls
back packets. An operator may do everything a reader may.

The standard health and reflection services are open to every caller that completed the TLS handshake, so
probes and tools such as grpcurl keep working. A method in no table is refused (tests/security checks that
every method in the protos is here).
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """Ordered: a role may call everything a lower one may."""

    READER = 1
    OPERATOR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: expected one of {', '.join(r.label for r in cls)}") from None


READER, OPERATOR = Role.READER, Role.OPERATOR

_SIMULATOR = "plasma.simulator.v1.SimulatorService"
_TRAINER = "plasma.trainer.v1.TrainerService"
_COMPILER = "plasma.compiler.v1.CompilerService"
_EDGE = "plasma.edge.v1.EdgeRuntimeService"
_REGISTRY = "plasma.registry.v1.RegistryService"

# Full method name, as gRPC names it in a call ("/package.Service/Method"), to the role it needs.
ROLES: dict[str, Role] = {
    f"/{_SIMULATOR}/CollectTransitions": OPERATOR,
    f"/{_SIMULATOR}/GetDataset": READER,
    f"/{_SIMULATOR}/ListDatasets": READER,
    f"/{_SIMULATOR}/FitWorldModel": OPERATOR,
    f"/{_SIMULATOR}/GetWorldModel": READER,
    f"/{_SIMULATOR}/ListWorldModels": READER,
    f"/{_SIMULATOR}/Simulate": READER,
    f"/{_SIMULATOR}/UploadTransitions": OPERATOR,
    f"/{_SIMULATOR}/StartSimulation": OPERATOR,
    f"/{_SIMULATOR}/GetSimulation": READER,
    f"/{_SIMULATOR}/ListSimulations": READER,
    f"/{_SIMULATOR}/CancelSimulation": OPERATOR,
    f"/{_SIMULATOR}/Subscribe": READER,
    f"/{_SIMULATOR}/ForecastErrors": READER,
    f"/{_SIMULATOR}/ExportWorldModel": READER,
    f"/{_SIMULATOR}/ExportDataset": READER,
    f"/{_TRAINER}/Train": OPERATOR,
    f"/{_TRAINER}/GetRun": READER,
    f"/{_TRAINER}/ListRuns": READER,
    f"/{_TRAINER}/WatchRun": READER,
    f"/{_TRAINER}/ExportPolicy": READER,
    f"/{_COMPILER}/Compile": OPERATOR,
    f"/{_COMPILER}/GetPacket": READER,
    f"/{_COMPILER}/ListPackets": READER,
    f"/{_COMPILER}/DownloadPacket": READER,
    f"/{_COMPILER}/GetSigningKey": READER,
    f"/{_EDGE}/LoadPacket": OPERATOR,
    f"/{_EDGE}/Rollback": OPERATOR,
    f"/{_EDGE}/Act": READER,
    f"/{_EDGE}/Control": READER,
    f"/{_EDGE}/GetStatus": READER,
    f"/{_EDGE}/ExportExperience": READER,
    f"/{_REGISTRY}/Publish": OPERATOR,
    f"/{_REGISTRY}/GetChannel": READER,
    f"/{_REGISTRY}/ListChannels": READER,
    f"/{_REGISTRY}/WatchChannel": READER,
    f"/{_REGISTRY}/FetchPacket": READER,
    # Edges and their devices report with the reader role they follow a channel with (docs/fleet.md).
    f"/{_REGISTRY}/Report": READER,
    f"/{_REGISTRY}/StartRollout": OPERATOR,
    f"/{_REGISTRY}/GetRollout": READER,
    f"/{_REGISTRY}/AbortRollout": OPERATOR,
    f"/{_REGISTRY}/ListDecisions": READER,
}

# Services every caller may use once connected: probes and reflection-driven tools.
OPEN_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})


def service_of(method: str) -> str:
    """"/package.Service/Method" -> "package.Service"."""
    return method.lstrip("/").rpartition("/")[0]
