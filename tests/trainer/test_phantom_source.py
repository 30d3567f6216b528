"""GrpcPhantomSource over durable simulations: the paths survive a simulator restart mid-stream."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import channels
from plasma.mbrl.types import PhantomPath
from plasma.reconnect import Reconnect
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.trainer.phantom_source import GrpcPhantomSource
from tests.conftest import running
from tests.support.waiting import eventually

T = 60.0
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=32, train_steps=200, seed=1)
NUM_PATHS = 1500



def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def address() -> str:
    return f"127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulator-store")


def _simulator(store: Path, address: str) -> AbstractContextManager[str]:
    config = Config(address=address, store_dir=store)
    return running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME)


@pytest.fixture(scope="module")
def model_id(store: Path, address: str) -> str:
    with _simulator(store, address), grpc.insecure_channel(address) as channel:
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        collected = list(stub.CollectTransitions(
            simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=400, seed=7), timeout=T))
        fitted = list(stub.FitWorldModel(simulator_pb2.FitWorldModelRequest(
            dataset_id=collected[-1].dataset.dataset_id, config=SMALL_MODEL), timeout=120))
        return fitted[-1].model.model_id


def _simulate(source: GrpcPhantomSource) -> Iterator[PhantomPath]:
    return source.simulate(policy=None, num_paths=NUM_PATHS, horizon=60, seed=5, start_states="episode_starts",
                           label_with_planner=None, reward_source="")


def _same(first: list[PhantomPath], second: list[PhantomPath]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
        and np.array_equal(a.rewards, b.rewards) and np.array_equal(a.dones, b.dones)
        for a, b in zip(first, second, strict=True)
    )


@pytest.mark.slow
def test_the_source_survives_a_simulator_restart_mid_stream(store: Path, address: str, model_id: str) -> None:
    channel = channels.channel(address)
    try:
        with _simulator(store, address):
            uninterrupted = list(_simulate(GrpcPhantomSource(channel, model_id, T)))
            source = GrpcPhantomSource(channel, model_id, T)
            paths = _simulate(source)
            received = [next(paths) for _ in range(10)]
        # The simulator is down now (its in-flight streams were cancelled); it comes back on the same port and
        # store, resumes the job, and the source resubscribes from where it stopped.
        with _simulator(store, address):
            received += list(paths)
        assert source.reconnects >= 1
        assert len(received) == NUM_PATHS == source.paths_received
        assert _same(received, uninterrupted)
    finally:
        channel.close()


def test_the_source_gives_up_on_a_simulator_that_stays_down(address: str, model_id: str) -> None:
    channel = channels.channel(address)  # nothing listens there outside the other test's `with` blocks
    try:
        quick = Reconnect(attempts=2, first_backoff_seconds=0.01, connect_seconds=0.1)
        source = GrpcPhantomSource(channel, model_id, T, quick)
        with pytest.raises(grpc.RpcError) as caught:
            list(_simulate(source))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_a_bad_request_is_not_retried(store: Path, address: str, model_id: str) -> None:
    channel = channels.channel(address)
    try:
        with _simulator(store, address):
            source = GrpcPhantomSource(channel, "wm-000000000000", T)
            with pytest.raises(grpc.RpcError) as caught:
                list(_simulate(source))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert source.reconnects == 0
    finally:
        channel.close()


def test_a_consumer_that_stops_early_cancels_its_simulation(store: Path, address: str, model_id: str) -> None:
    channel = channels.channel(address)
    try:
        with _simulator(store, address):
            paths = _simulate(GrpcPhantomSource(channel, model_id, T))
            first = [next(paths) for _ in range(3)]
            paths.close()
            stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
            started = stub.ListSimulations(simulator_pb2.ListSimulationsRequest(), timeout=T).simulations[-1]

            def stopped() -> simulator_pb2.Simulation | None:  # the job stops at its next path
                simulation = stub.GetSimulation(
                    simulator_pb2.GetSimulationRequest(simulation_id=started.simulation_id), timeout=T).simulation
                return simulation if simulation.state != simulator_pb2.SIMULATION_STATE_RUNNING else None

            newest = eventually(stopped, T, "the simulation stopping")
        assert len(first) == 3
        assert newest.state == simulator_pb2.SIMULATION_STATE_CANCELLED and newest.paths_logged < NUM_PATHS
    finally:
        channel.close()
