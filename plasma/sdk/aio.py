"""PlasmaClient for asyncio (grpc.aio): the same calls, awaited, with the same deadlines, retries, requests and
results (plasma.sdk.calls).

    async with AsyncPlasmaClient(Endpoints.from_env()) as client:
        await client.wait_ready()
        dataset = await client.collect("CartPole-v1", 200)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import numpy as np

from plasma import blobs, channels, packet
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.sdk import aio_streams, calls
from plasma.sdk.aio_control import AsyncControlSession
from plasma.sdk.calls import Progress
from plasma.sdk.client import Endpoints
from plasma.sdk.packet_cache import PacketCache
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc


async def _final(stream: AsyncIterable[Any], result_field: str, on_progress: Progress | None) -> Any:
    async for message in stream:
        if (found := calls.result(message, result_field, on_progress)) is not None:
            return found
    raise calls.no_result(result_field)


class AsyncPlasmaClient:
    """Every method of PlasmaClient, as a coroutine (simulation_paths: an async iterator; control: an
    AsyncControlSession). Open and use it inside one running event loop."""

    def __init__(self, endpoints: Endpoints, stream_deadline_s: float = channels.STREAM_DEADLINE_S,
                 packet_cache: PacketCache | None = None) -> None:
        self.endpoints = endpoints
        self.packet_cache = packet_cache
        self._stream_deadline_s = stream_deadline_s
        self._channels = {name: channels.aio_channel(getattr(endpoints, name), endpoints.security)
                          for name in calls.SERVICES}
        self.simulator: simulator_pb2_grpc.SimulatorServiceAsyncStub = simulator_pb2_grpc.SimulatorServiceStub(
            self._channels["simulator"])
        self.trainer: trainer_pb2_grpc.TrainerServiceAsyncStub = trainer_pb2_grpc.TrainerServiceStub(
            self._channels["trainer"])
        self.compiler: compiler_pb2_grpc.CompilerServiceAsyncStub = compiler_pb2_grpc.CompilerServiceStub(
            self._channels["compiler"])
        self.edge: edge_pb2_grpc.EdgeRuntimeServiceAsyncStub = edge_pb2_grpc.EdgeRuntimeServiceStub(
            self._channels["edge"])

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))

    async def __aenter__(self) -> AsyncPlasmaClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in self._channels.values())), timeout_s)

    # Simulator

    async def collect(self, env_id: str, num_steps: int, seed: int = 0, on_progress: Progress | None = None,
                      **request: Any) -> simulator_pb2.Dataset:
        stream = self.simulator.CollectTransitions(calls.collect(env_id, num_steps, seed, **request),
                                                   timeout=self._stream_deadline_s)
        dataset: simulator_pb2.Dataset = await _final(stream, "dataset", on_progress)
        return dataset

    async def fit_world_model(self, dataset_id: str, config: simulator_pb2.WorldModelConfig | None = None,
                              on_progress: Progress | None = None,
                              init_from_model_id: str = "") -> simulator_pb2.WorldModel:
        stream = self.simulator.FitWorldModel(calls.fit(dataset_id, config, init_from_model_id),
                                              timeout=self._stream_deadline_s)
        model: simulator_pb2.WorldModel = await _final(stream, "model", on_progress)
        return model

    async def upload(self, env_spec: common_pb2.EnvSpec, arrays: Mapping[str, np.ndarray], name: str = "",
                     append_to: str = "", batch_rows: int = 4096,
                     on_progress: Progress | None = None) -> simulator_pb2.Dataset:
        stream = self.simulator.UploadTransitions(calls.upload(env_spec, arrays, name, append_to, batch_rows),
                                                  timeout=self._stream_deadline_s)
        dataset: simulator_pb2.Dataset = await _final(stream, "dataset", on_progress)
        return dataset

    async def forecast(self, model_id: str, start_observation: np.ndarray, policy: simulator_pb2.RolloutPolicy,
                       horizon: int = 100, num_samples: int = 0, seed: int = 0,
                       **request: Any) -> simulator_pb2.ForecastErrorsResponse:
        return await self.simulator.ForecastErrors(
            calls.forecast(model_id, start_observation, policy, horizon, num_samples, seed, **request),
            timeout=self._stream_deadline_s)

    async def start_simulation(self, request: simulator_pb2.SimulateRequest) -> simulator_pb2.Simulation:
        response = await self.simulator.StartSimulation(simulator_pb2.StartSimulationRequest(request=request),
                                                        timeout=channels.UNARY_DEADLINE_S)
        return response.simulation

    def simulation_paths(self, simulation_id: str,
                         from_sequence: int = 0) -> AsyncIterator[simulator_pb2.PhantomPath]:
        return aio_streams.simulation_paths(self._channels["simulator"], simulation_id, from_sequence,
                                            self._stream_deadline_s)

    # Trainer

    async def train(self, model_id: str, config: trainer_pb2.TrainConfig | None = None,
                    on_progress: Progress | None = None, task: task_pb2.TaskSpec | None = None,
                    base_run_id: str = "") -> trainer_pb2.Run:
        return await aio_streams.train_to_end(self.trainer, self._channels["trainer"],
                                              calls.train(model_id, config, task, base_run_id),
                                              self._stream_deadline_s, on_progress)

    # Compiler

    async def compile(self, run_id: str, name: str = "", on_progress: Progress | None = None,
                      kind: common_pb2.PacketKind = common_pb2.PACKET_KIND_MERGED, base_packet_id: str = "",
                      precision: compiler_pb2.Precision = compiler_pb2.PRECISION_UNSPECIFIED,
                      float_fallback: bool = False, min_agreement: float = 0.0,
                      profile: compiler_pb2.Profile | str = compiler_pb2.PROFILE_UNSPECIFIED,
                      size_budget_bytes: int = 0, compression_level: int | None = None) -> compiler_pb2.Packet:
        """PlasmaClient.compile's packet, profiles and overrides included."""
        request = calls.compile_packet(run_id, name, kind, base_packet_id, precision, float_fallback, min_agreement,
                                       profile, size_budget_bytes, compression_level)
        compiled: compiler_pb2.Packet = await _final(self.compiler.Compile(request, timeout=self._stream_deadline_s),
                                                     "packet", on_progress)
        return compiled

    async def download_packet(self, packet_id: str) -> bytes:
        if self.packet_cache is not None and (cached := self.packet_cache.get(packet_id)) is not None:
            return cached.data
        stream = self.compiler.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=packet_id),
                                              timeout=channels.UNARY_DEADLINE_S)
        data = blobs.receive([message async for message in stream], "DownloadPacket")
        if self.packet_cache is not None:
            self.packet_cache.put(data)
        return data

    # Edge runtime

    async def deploy(self, data: bytes, media_type: str = packet.MEDIA_TYPE) -> edge_pb2.PacketInfo:
        response = await self.edge.LoadPacket(calls.deploy(data, media_type), timeout=channels.UNARY_DEADLINE_S)
        return response.packet

    def control(self) -> AsyncControlSession:
        return AsyncControlSession(self.edge, self._channels["edge"])

    async def act(self, observation: np.ndarray, timeout_s: float = 1.0) -> np.ndarray:
        return calls.action(await self.edge.Act(calls.act(observation), timeout=timeout_s))

    async def export_experience(self, from_sequence: int = 0) -> bytes:
        """PlasmaClient.export_experience: the edge's recorded transitions from `from_sequence` on, as an archive."""
        stream = self.edge.ExportExperience(edge_pb2.ExportExperienceRequest(from_sequence=from_sequence),
                                            timeout=self._stream_deadline_s)
        return blobs.receive([message async for message in stream], "ExportExperience")

    async def edge_status(self) -> edge_pb2.GetStatusResponse:
        return await self.edge.GetStatus(edge_pb2.GetStatusRequest(), timeout=channels.UNARY_DEADLINE_S)


__all__ = ["AsyncControlSession", "AsyncPlasmaClient", "Endpoints"]
