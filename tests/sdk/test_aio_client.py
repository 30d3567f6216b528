"""AsyncPlasmaClient against real services on port 0: the sync client's calls, awaited, with the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import packet, tensors
from plasma.sdk import AsyncPlasmaClient
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.packet_cache import PacketCache
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import running
from tests.support import policies
from tests.support.edge import TRUSTED
from tests.support.training import TINY_TRAIN, small_cartpole_model

WORLD_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=16, train_steps=50)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = SimulatorConfig(address="127.0.0.1:0", store_dir=tmp_path_factory.mktemp("simulator"))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address:
        yield address


def test_simulator_calls(simulator: str) -> None:
    """collect, fit_world_model, forecast, start_simulation and simulation_paths, awaited; the same data as the
    sync client's for the same seed."""
    async def scenario() -> tuple[simulator_pb2.Dataset, list[str], simulator_pb2.ForecastErrorsResponse,
                                  list[simulator_pb2.PhantomPath]]:
        async with AsyncPlasmaClient(Endpoints(simulator=simulator)) as client:
            dataset = await client.collect("CartPole-v1", 120, seed=4)
            stages: list[str] = []
            model = await client.fit_world_model(dataset.dataset_id, WORLD_MODEL,
                                                 on_progress=lambda event: stages.append(type(event).__name__))
            policy = simulator_pb2.RolloutPolicy()
            policy.random.SetInParent()
            forecast = await client.forecast(model.model_id, np.zeros(4, np.float32), policy, horizon=10,
                                             num_samples=8)
            request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=5, horizon=10, seed=1,
                                                    policy=policy)
            simulation = await client.start_simulation(request)
            paths = [path async for path in client.simulation_paths(simulation.simulation_id)]
            return dataset, stages, forecast, paths

    dataset, stages, forecast, paths = asyncio.run(scenario())
    with PlasmaClient(Endpoints(simulator=simulator)) as sync:
        again = sync.collect("CartPole-v1", 120, seed=4)
    assert dataset.num_transitions == again.num_transitions == 120
    assert (dataset.num_episodes, dataset.mean_episode_return) == (again.num_episodes, again.mean_episode_return)
    assert stages and "QualityReport" in stages
    assert forecast.ByteSize() > 0
    assert [p.index for p in paths] == list(range(5))


def test_edge_and_compiler_calls(tmp_path: Path, compiler: str, edge: str, signed_packet: bytes) -> None:
    """wait_ready, download_packet (into the cache), deploy, act, a control loop and edge_status, awaited."""
    packet_id = packet.read(signed_packet)[0].packet_id
    observations = policies.observations("discrete", 8, seed=3)

    async def scenario() -> tuple[bytes, str, list[int], list[int], int]:
        cache = PacketCache(TRUSTED, tmp_path)
        # wait_ready waits for every channel: the simulator's and the trainer's name the compiler here.
        endpoints = Endpoints(simulator=compiler, trainer=compiler, compiler=compiler, edge=edge)
        async with AsyncPlasmaClient(endpoints, packet_cache=cache) as client:
            await client.wait_ready(30)
            data = await client.download_packet(packet_id)
            info = await client.deploy(data)
            acted = [int(await client.act(obs)) for obs in observations]
            async with client.control() as loop:
                answers = [await loop.act(obs) for obs in observations]
            assert [a.sequence for a in answers] == list(range(1, len(observations) + 1))
            status = await client.edge_status()
            controlled = [int(tensors.from_proto(a.action, "action")) for a in answers]
            return data, info.packet_id, acted, controlled, status.requests_served

    data, deployed, acted, controlled, served = asyncio.run(scenario())
    assert data == signed_packet
    assert (tmp_path / packet_id / "packet.zip").exists(), "download_packet did not fill the cache"
    assert deployed == packet_id
    with PlasmaClient(Endpoints(edge=edge)) as sync:
        expected = [int(sync.act(obs)) for obs in observations]
    assert acted == controlled == expected
    assert served >= 2 * len(observations)


def test_train(simulator: str, tmp_path: Path) -> None:
    """train, awaited: the run to its end, each progress event once, in order."""
    with grpc.insecure_channel(simulator) as channel:
        model_id = small_cartpole_model(channel)
    config = TrainerConfig(address="127.0.0.1:0", simulator_address=simulator, store_dir=tmp_path / "trainer")
    events: list[trainer_pb2.TrainProgress] = []

    async def scenario(trainer: str) -> trainer_pb2.Run:
        async with AsyncPlasmaClient(Endpoints(simulator=simulator, trainer=trainer)) as client:
            return await client.train(model_id, TINY_TRAIN, on_progress=events.append)

    with running(lambda: trainer_server.create_server(config), trainer_server.SERVICE_NAME) as trainer:
        run = asyncio.run(scenario(trainer))
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert events == list(run.history)
