"""Simulation batches on a real Ray cluster (a head and two worker nodes as local processes, reached through Ray
Client as the simulator reaches the cluster of deploy/docker-compose.cluster.yml): the simulator serves the very
paths it computes in process. The compose e2e test (tests/e2e/test_ray_cluster.py) kills a worker mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import ray

from plasma.mbrl.rollout import Batch, batch_seed, batches
from plasma.simulator.v1 import audit_pb2, simulator_pb2, simulator_pb2_grpc
from services.common import wire
from services.simulator import requests
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.simulator.ray_local import LocalRayCluster
from services.simulator.store import SimulatorStore
from tests.conftest import running

pytestmark = pytest.mark.slow

T = 120.0
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300, seed=1)
BATCH_PATHS = 8


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A head and two worker nodes of one CPU each, as local processes."""
    with LocalRayCluster(workers=2) as address:
        yield address
        ray.shutdown()  # the simulator's Ray Client connection, before its cluster goes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulator-store")


@pytest.fixture(scope="module")
def stub(store: Path, ray_address: str) -> Iterator[simulator_pb2_grpc.SimulatorServiceStub]:
    config = Config(address="127.0.0.1:0", store_dir=store, ray_address=ray_address, batch_paths=BATCH_PATHS)
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        yield simulator_pb2_grpc.SimulatorServiceStub(channel)


@pytest.fixture(scope="module")
def model(stub: simulator_pb2_grpc.SimulatorServiceStub) -> simulator_pb2.WorldModel:
    collected = list(stub.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=400, seed=7), timeout=T))
    fitted = list(stub.FitWorldModel(simulator_pb2.FitWorldModelRequest(
        dataset_id=collected[-1].dataset.dataset_id, config=SMALL_MODEL), timeout=T))
    return fitted[-1].model


def _in_process(store: Path, request: simulator_pb2.SimulateRequest) -> list[bytes]:
    models = requests.ModelCache(SimulatorStore(store), capacity=1)
    paths = requests.open_paths(request, SimulatorStore(store), models, requests.Execution(BATCH_PATHS))
    return [wire.path_to_proto(path, index).SerializeToString() for index, path in enumerate(paths)]


def test_batches_are_seeded_one_by_one() -> None:
    planned = batches(num_paths=20, seed=5, batch_paths=BATCH_PATHS)
    assert [(b.index, b.size) for b in planned] == [(0, 8), (1, 8), (2, 4)]
    # Batch 0 draws from the request's seed, as a single batch always did; the others from their own.
    assert planned[0] == Batch(0, 8, 5)
    assert len({b.seed for b in planned}) == 3 and planned[1].seed == batch_seed(5, 1) != batch_seed(6, 1)


@pytest.mark.parametrize("policy", ["planner", "random"])
def test_the_simulator_on_ray_streams_the_paths_it_computes_in_process(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model: simulator_pb2.WorldModel, store: Path, policy: str
) -> None:
    # Planner-driven paths labelled by the planner, and random ones labelled by it: rollout, labels and audit all
    # run on the Ray worker. 20 paths in batches of 8: three tasks, two of them in flight at once.
    request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=20, horizon=40, seed=11)
    request.label_with_planner.horizon = 8
    request.label_with_planner.num_samples = 16
    if policy == "planner":
        request.policy.planner.CopyFrom(request.label_with_planner)
    else:
        request.policy.random.SetInParent()
    streamed = [response.path.SerializeToString() for response in stub.Simulate(request, timeout=T)]
    assert len(streamed) == 20
    assert streamed == _in_process(store, request)
    audits = [simulator_pb2.PhantomPath.FromString(path).audit for path in streamed]
    assert all(audit.verdict != audit_pb2.AUDIT_VERDICT_UNSPECIFIED for audit in audits)


def test_a_durable_simulation_on_ray_logs_the_same_paths(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model: simulator_pb2.WorldModel, store: Path
) -> None:
    request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=12, horizon=30, seed=4)
    request.policy.random.SetInParent()
    started = stub.StartSimulation(simulator_pb2.StartSimulationRequest(request=request), timeout=T).simulation
    read = [response.path.SerializeToString() for response in stub.Subscribe(
        simulator_pb2.SubscribeRequest(simulation_id=started.simulation_id), timeout=T)]
    # The subscription ended OK: the job SUCCEEDED with every path logged.
    assert read == _in_process(store, request)
    assert np.mean([simulator_pb2.PhantomPath.FromString(p).length for p in read]) > 1
