"""A thin, typed client over the four services. Every call carries a deadline; idempotent ones are retried on
UNAVAILABLE by the channel (plasma.channels.RETRY_POLICY). plasma.sdk.aio is the same client for asyncio."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from plasma import blobs, channels, packet
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.sdk import calls, training
from plasma.sdk.calls import Progress
from plasma.sdk.control import ControlSession
from plasma.sdk.packet_cache import PacketCache
from plasma.sdk.rollout import RolloutClient
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.subscription import DurablePaths
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc


@dataclass(frozen=True)
class Endpoints:
    """Where the four services listen and how to reach them: plaintext (local processes on loopback) or, with
    `security`, TLS with this client's certificate or token (docs/security.md)."""

    simulator: str = "127.0.0.1:50051"
    trainer: str = "127.0.0.1:50052"
    compiler: str = "127.0.0.1:50053"
    edge: str = "127.0.0.1:50054"
    security: channels.ClientSecurity | None = None
    # The packet registry (docs/fleet.md), reached through PlasmaClient.rollout.
    registry: str = "127.0.0.1:50055"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Endpoints:
        """PLASMA_<SERVICE>_TARGET, and PLASMA_TLS_CA, _CERT, _KEY, _SERVER_NAME and PLASMA_TOKEN_FILE for TLS."""
        return cls(
            simulator=env.get("PLASMA_SIMULATOR_TARGET", cls.simulator),
            trainer=env.get("PLASMA_TRAINER_TARGET", cls.trainer),
            compiler=env.get("PLASMA_COMPILER_TARGET", cls.compiler),
            edge=env.get("PLASMA_EDGE_TARGET", cls.edge),
            security=channels.ClientSecurity.from_env(env),
            registry=env.get("PLASMA_REGISTRY_TARGET", cls.registry),
        )


def _final(stream: Iterator[Any], result_field: str, on_progress: Progress | None) -> Any:
    """Consumes a progress stream: forwards progress events, returns the final result message."""
    for message in stream:
        if (found := calls.result(message, result_field, on_progress)) is not None:
            return found
    raise calls.no_result(result_field)


class PlasmaClient:
    """`packet_cache` (e.g. PacketCache.from_env()) keeps every packet download_packet returns, verified, and
    answers later downloads of the same packet from it; plasma.sdk.offline acts from it without the network."""

    def __init__(self, endpoints: Endpoints, stream_deadline_s: float = channels.STREAM_DEADLINE_S,
                 packet_cache: PacketCache | None = None) -> None:
        self.endpoints = endpoints
        self.packet_cache = packet_cache
        self._stream_deadline_s = stream_deadline_s
        self._channels = {name: channels.channel(getattr(endpoints, name), endpoints.security)
                          for name in calls.SERVICES}
        self.simulator = simulator_pb2_grpc.SimulatorServiceStub(self._channels["simulator"])
        self.trainer = trainer_pb2_grpc.TrainerServiceStub(self._channels["trainer"])
        self.compiler = compiler_pb2_grpc.CompilerServiceStub(self._channels["compiler"])
        self.edge = edge_pb2_grpc.EdgeRuntimeServiceStub(self._channels["edge"])
        # Its own channel, outside _channels: wait_ready waits for the four pipeline services only.
        self._registry_channel = channels.channel(endpoints.registry, endpoints.security)
        self.rollout = RolloutClient(self._registry_channel)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._registry_channel.close()

    def __enter__(self) -> PlasmaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        for channel in self._channels.values():
            channels.wait_ready(channel, timeout_s)

    # Simulator

    def collect(self, env_id: str, num_steps: int, seed: int = 0, on_progress: Progress | None = None,
                **request: Any) -> simulator_pb2.Dataset:
        stream = self.simulator.CollectTransitions(calls.collect(env_id, num_steps, seed, **request),
                                                   timeout=self._stream_deadline_s)
        return _final(stream, "dataset", on_progress)

    def fit_world_model(self, dataset_id: str, config: simulator_pb2.WorldModelConfig | None = None,
                        on_progress: Progress | None = None, init_from_model_id: str = "") -> simulator_pb2.WorldModel:
        """Fits (or, with `init_from_model_id`, fine-tunes) a world model; on_progress also gets the
        QualityReport messages ("before" when fine-tuning, "after")."""
        stream = self.simulator.FitWorldModel(calls.fit(dataset_id, config, init_from_model_id),
                                              timeout=self._stream_deadline_s)
        return _final(stream, "model", on_progress)

    def upload(self, env_spec: common_pb2.EnvSpec, arrays: Mapping[str, np.ndarray], name: str = "",
               append_to: str = "", batch_rows: int = 4096,
               on_progress: Progress | None = None) -> simulator_pb2.Dataset:
        """Streams logged transitions as a new dataset `name` (or the next version of `append_to`), in batches
        of `batch_rows`. `arrays` are named and typed like TransitionBatch's fields (plasma.sdk.logged.load_npz
        reads them from a file); on_progress gets each BatchAck."""
        stream = self.simulator.UploadTransitions(calls.upload(env_spec, arrays, name, append_to, batch_rows),
                                                  timeout=self._stream_deadline_s)
        return _final(stream, "dataset", on_progress)

    def forecast(self, model_id: str, start_observation: np.ndarray, policy: simulator_pb2.RolloutPolicy,
                 horizon: int = 100, num_samples: int = 0, seed: int = 0,
                 **request: Any) -> simulator_pb2.ForecastErrorsResponse:
        """ForecastErrors from one start state [obs_dim]. A unary call, but it rolls out up to 4,096 paths
        (with a planner, minutes): it gets the long deadline."""
        return self.simulator.ForecastErrors(
            calls.forecast(model_id, start_observation, policy, horizon, num_samples, seed, **request),
            timeout=self._stream_deadline_s)

    def start_simulation(self, request: simulator_pb2.SimulateRequest) -> simulator_pb2.Simulation:
        """A durable simulation job: its paths are logged in the simulator, to be read with simulation_paths."""
        return self.simulator.StartSimulation(simulator_pb2.StartSimulationRequest(request=request),
                                              timeout=channels.UNARY_DEADLINE_S).simulation

    def simulation_paths(self, simulation_id: str, from_sequence: int = 0) -> Iterator[simulator_pb2.PhantomPath]:
        """A simulation's paths from `from_sequence` on, each once and in order, until the job ends; resubscribes
        where it stopped after the simulator restarted or the connection broke (plasma.subscription)."""
        return DurablePaths(self._channels["simulator"], self._stream_deadline_s).follow(simulation_id, from_sequence)

    # Trainer

    def train(self, model_id: str, config: trainer_pb2.TrainConfig | None = None,
              on_progress: Progress | None = None, task: task_pb2.TaskSpec | None = None,
              base_run_id: str = "") -> trainer_pb2.Run:
        """`task` (default: the environment's objective) is what to optimize; `base_run_id` reuses that run's
        base policy and trains only a LoRA adapter for the task (plasma.sdk.tasks builds tasks)."""
        request = calls.train(model_id, config, task, base_run_id)
        # A broken stream (the trainer restarted, the connection reset) is followed through to the same run.
        return training.train_to_end(self.trainer, self._channels["trainer"], request, self._stream_deadline_s,
                                     on_progress)

    # Compiler

    def compile(self, run_id: str, name: str = "", on_progress: Progress | None = None,
                kind: common_pb2.PacketKind = common_pb2.PACKET_KIND_MERGED,
                base_packet_id: str = "",
                precision: compiler_pb2.Precision = compiler_pb2.PRECISION_UNSPECIFIED,
                float_fallback: bool = False, min_agreement: float = 0.0,
                profile: compiler_pb2.Profile | str = compiler_pb2.PROFILE_UNSPECIFIED, size_budget_bytes: int = 0,
                compression_level: int | None = None) -> compiler_pb2.Packet:
        """A packet of `kind`: MERGED (default), ADAPTABLE (base that adapter packets apply to), or ADAPTER (only
        the run's LoRA weights, for the ADAPTABLE packet `base_packet_id`). `precision` unspecified walks the
        precision ladder; `min_agreement` 0 is the compiler's default gate (0.95). `profile` ("edge", "mobile",
        "server" or a compiler_pb2.Profile) picks precisions, graph format, pruning and compression;
        `size_budget_bytes` (0: none) refuses a larger packet; `compression_level` 0-9 overrides the profile's."""
        request = calls.compile_packet(run_id, name, kind, base_packet_id, precision, float_fallback, min_agreement,
                                       profile, size_budget_bytes, compression_level)
        stream = self.compiler.Compile(request, timeout=self._stream_deadline_s)
        return _final(stream, "packet", on_progress)

    def download_packet(self, packet_id: str) -> bytes:
        """The packet's bytes: from the packet cache when it holds them (verified), else downloaded (and, with a
        cache, verified and kept; packet.PacketError when the packet fails the cache's checks)."""
        if self.packet_cache is not None and (cached := self.packet_cache.get(packet_id)) is not None:
            return cached.data
        stream = self.compiler.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=packet_id),
                                              timeout=channels.UNARY_DEADLINE_S)
        data = blobs.receive(stream, "DownloadPacket")
        if self.packet_cache is not None:
            self.packet_cache.put(data)
        return data

    # Edge runtime

    def deploy(self, data: bytes, media_type: str = packet.MEDIA_TYPE) -> edge_pb2.PacketInfo:
        return self.edge.LoadPacket(calls.deploy(data, media_type), timeout=channels.UNARY_DEADLINE_S).packet

    def control(self) -> ControlSession:
        """A control loop over one Control stream that carries on across edge restarts (plasma.sdk.control)."""
        return ControlSession(self.edge, self._channels["edge"])

    def act(self, observation: np.ndarray, timeout_s: float = 1.0) -> np.ndarray:
        return calls.action(self.edge.Act(calls.act(observation), timeout=timeout_s))

    def export_experience(self, from_sequence: int = 0) -> bytes:
        """The transitions the edge recorded from Control streams from `from_sequence` on, as a transitions archive
        (plasma.sdk.feedback reads it); FAILED_PRECONDITION when it records none or has none from there."""
        stream = self.edge.ExportExperience(edge_pb2.ExportExperienceRequest(from_sequence=from_sequence),
                                            timeout=self._stream_deadline_s)
        return blobs.receive(stream, "ExportExperience")

    def edge_status(self) -> edge_pb2.GetStatusResponse:
        return self.edge.GetStatus(edge_pb2.GetStatusRequest(), timeout=channels.UNARY_DEADLINE_S)
