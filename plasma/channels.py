"""Channel settings shared by every client (SDK, CLI, services calling each other) and, for message sizes, servers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from plasma.server import settings

# Packets and bundles stream in 64 KiB chunks; anything near this bound is a client bug. Servers use the same.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# The RPCs a client may send again after UNAVAILABLE, by service: those whose second attempt changes nothing
# the first did not. Reads (Get*, List*, Export*, Download*, Subscribe and WatchRun replay logs), pure
# computations (Act, Simulate, ForecastErrors: nothing stored), health checks, and CancelSimulation (an ended
# job is returned as it is). Never the calls that create or change something: CollectTransitions,
# UploadTransitions, FitWorldModel, StartSimulation, Train, Compile, LoadPacket (a second load of the same
# version is refused as not newer), Rollback (a second one goes back further or fails). Control is left to
# plasma.sdk.control, which resumes its stream knowing which observation is unanswered.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "plasma.simulator.v1.SimulatorService": (
        "GetDataset", "ListDatasets", "GetWorldModel", "ListWorldModels", "Simulate", "GetSimulation",
        "ListSimulations", "CancelSimulation", "Subscribe", "ForecastErrors", "ExportWorldModel", "ExportDataset"),
    "plasma.trainer.v1.TrainerService": ("GetRun", "ListRuns", "WatchRun", "ExportPolicy"),
    "plasma.compiler.v1.CompilerService": ("GetPacket", "ListPackets", "DownloadPacket", "GetSigningKey"),
    "plasma.edge.v1.EdgeRuntimeService": ("Act", "GetStatus", "ExportExperience"),
    # Not Report: each one adds an edge's figures since its last, so a resent one would count twice.
    "plasma.registry.v1.RegistryService": ("GetChannel", "ListChannels", "WatchChannel", "FetchPacket", "GetRollout",
                                           "ListDecisions"),
    "grpc.health.v1.Health": ("Check",),
}
# gRPC retries within the call's own deadline, only until the first response message arrives (a stream that
# broke later is resumed by plasma.reconnect's callers), sleeping a random share of the backoff, which grows
# from initial to max by the multiplier. Five attempts is the most gRPC allows.
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps({"methodConfig": [
    {"name": [{"service": service, "method": method} for method in methods], "retryPolicy": RETRY_POLICY}
    for service, methods in IDEMPOTENT_METHODS.items()
]})
CLIENT_OPTIONS: list[tuple[str, str | int]] = [
    *MESSAGE_OPTIONS, ("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG),
]
# Every client call carries a deadline; these are the defaults by kind of call.
UNARY_DEADLINE_S = 30.0
# Long streams (collection, fitting, training, compiling) get a generous bound, not none.
STREAM_DEADLINE_S = 3600.0


@dataclass(frozen=True)
class ClientSecurity:
    """How a client reaches servers that speak TLS: the CA that signed their certificates, for mTLS this client's
    own certificate and key, and optionally a bearer token sent on every call.

    Read from PLASMA_TLS_CA, PLASMA_TLS_CERT, PLASMA_TLS_KEY, PLASMA_TLS_SERVER_NAME and PLASMA_TOKEN_FILE by every
    client alike: the SDK, the CLI, the container health checks, and the trainer's and compiler's calls to other
    services. Files are read when a channel opens, so a restarted client picks up rotated certificates."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    # Name checked against the server's certificate instead of the host in the address (e.g. an IP address
    # that the certificate does not name, or a tunnel); empty: the address's host.
    server_name: str = ""
    token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ClientSecurity | None:
        """None (plaintext) when PLASMA_TLS_CA is unset; an error naming the variable for a half-given setting."""
        ca = settings.file(env, "PLASMA_TLS_CA", "PEM certificate of the CA that signed the servers' certificates")
        cert = settings.file(env, "PLASMA_TLS_CERT", "this client's PEM certificate, for mutual TLS")
        key = settings.file(env, "PLASMA_TLS_KEY", "the PEM private key of PLASMA_TLS_CERT")
        token_file = settings.file(env, "PLASMA_TOKEN_FILE", "a file holding this client's bearer token")
        server_name = env.get("PLASMA_TLS_SERVER_NAME", "")
        if (cert is None) != (key is None):
            raise settings.ConfigError("PLASMA_TLS_CERT and PLASMA_TLS_KEY are not valid: expected both or neither")
        if ca is None:
            given = [name for name, value in (("PLASMA_TLS_CERT", cert), ("PLASMA_TOKEN_FILE", token_file),
                                              ("PLASMA_TLS_SERVER_NAME", server_name)) if value]
            if given:
                raise settings.ConfigError(f"{given[0]} is set but PLASMA_TLS_CA is not: expected PLASMA_TLS_CA too "
                                           "(certificates and tokens are only sent over TLS)")
            return None
        token = token_file.read_text().strip() if token_file is not None else ""
        if token_file is not None and not token:
            raise settings.ConfigError(f"PLASMA_TOKEN_FILE={str(token_file)!r} is not valid: the file is empty")
        return cls(ca=ca, cert=cert, key=key, server_name=server_name, token=token)

    def credentials(self) -> grpc.ChannelCredentials:
        pair = (self.key.read_bytes(), self.cert.read_bytes()) if self.cert and self.key else (None, None)
        tls = grpc.ssl_channel_credentials(self.ca.read_bytes(), *pair)
        if not self.token:
            return tls
        # Sends `authorization: Bearer <token>` on every call; gRPC sends it over TLS channels only.
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))


def channel(address: str, security: ClientSecurity | None = None) -> grpc.Channel:
    """A channel to `address`: plaintext without `security` (local processes on loopback), TLS with it; idempotent
    RPCs retried on UNAVAILABLE with backoff (RETRY_POLICY)."""
    if security is None:
        return grpc.insecure_channel(address, options=CLIENT_OPTIONS)
    return grpc.secure_channel(address, security.credentials(), options=_secure_options(security))


def aio_channel(address: str, security: ClientSecurity | None = None) -> grpc.aio.Channel:
    """`channel` for asyncio (grpc.aio): the same options, retries and credentials."""
    if security is None:
        return grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
    return grpc.aio.secure_channel(address, security.credentials(), options=_secure_options(security))


def _secure_options(security: ClientSecurity) -> list[tuple[str, str | int]]:
    if not security.server_name:
        return CLIENT_OPTIONS
    return [*CLIENT_OPTIONS, ("grpc.ssl_target_name_override", security.server_name)]


def wait_ready(ch: grpc.Channel, timeout_s: float) -> None:
    grpc.channel_ready_future(ch).result(timeout=timeout_s)
