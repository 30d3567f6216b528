"""SimulatorService against a real server on port 0: behaviour, bad input, durability."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from plasma import tensors
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import rpc_error, running

T = 30.0  # deadline for every call in these tests
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300, seed=1)


def _start(store: Path):  # type: ignore[no-untyped-def]
    config = Config(address="127.0.0.1:0", store_dir=store)
    return running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulator-store")


@pytest.fixture(scope="module")
def stub(store: Path) -> Iterator[simulator_pb2_grpc.SimulatorServiceStub]:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        yield simulator_pb2_grpc.SimulatorServiceStub(channel)


@pytest.fixture(scope="module")
def dataset(stub: simulator_pb2_grpc.SimulatorServiceStub) -> simulator_pb2.Dataset:
    responses = list(stub.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=400, seed=7), timeout=T))
    assert all(r.HasField("progress") for r in responses[:-1])
    assert responses[-1].HasField("dataset")
    return responses[-1].dataset


@pytest.fixture(scope="module")
def model(stub: simulator_pb2_grpc.SimulatorServiceStub, dataset: simulator_pb2.Dataset) -> simulator_pb2.WorldModel:
    responses = list(stub.FitWorldModel(
        simulator_pb2.FitWorldModelRequest(dataset_id=dataset.dataset_id, config=SMALL_MODEL), timeout=120))
    assert any(r.HasField("progress") for r in responses)
    return responses[-1].model


def test_collect_records_exactly_the_requested_real_steps(
    stub: simulator_pb2_grpc.SimulatorServiceStub, dataset: simulator_pb2.Dataset
) -> None:
    assert dataset.num_transitions == 400
    assert dataset.env_spec.env_id == "CartPole-v1"
    assert list(dataset.env_spec.observation_space.shape) == [4]
    assert dataset.env_spec.action_space.n == 2
    assert stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=dataset.dataset_id), timeout=T).dataset == dataset
    listed = stub.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=T).datasets
    assert dataset.dataset_id in [d.dataset_id for d in listed]


def test_fitted_model_beats_the_naive_predictor(model: simulator_pb2.WorldModel) -> None:
    assert model.metrics.holdout_obs_mse < model.metrics.holdout_naive_obs_mse
    assert model.config.ensemble_size == 3


def test_simulate_streams_consistent_phantom_paths(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model: simulator_pb2.WorldModel
) -> None:
    request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=6, horizon=40, seed=3)
    request.policy.random.SetInParent()
    request.label_with_planner.SetInParent()
    paths = [r.path for r in stub.Simulate(request, timeout=120)]
    assert [p.index for p in paths] == list(range(6))
    for path in paths:
        observations = tensors.from_proto(path.observations)
        dones = tensors.from_proto(path.dones)
        assert 1 <= path.length <= 40
        assert observations.shape == (path.length + 1, 4)
        assert tensors.from_proto(path.actions).shape == (path.length,)
        assert tensors.from_proto(path.expert_actions).shape == (path.length,)
        assert not dones[:-1].any()  # a path ends at its first predicted termination
        assert path.length == 40 or dones[-1]
        assert (tensors.from_proto(path.uncertainty) >= 0).all()
        assert path.total_reward == pytest.approx(float(tensors.from_proto(path.rewards).sum()), rel=1e-5)


def test_simulate_is_repeatable_for_a_seed(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model: simulator_pb2.WorldModel
) -> None:
    request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=3, horizon=20, seed=11)
    first = [r.path for r in stub.Simulate(request, timeout=T)]
    second = [r.path for r in stub.Simulate(request, timeout=T)]
    assert first == second


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (simulator_pb2.CollectTransitionsRequest(env_id="NoSuchEnv-v9", num_steps=10), grpc.StatusCode.INVALID_ARGUMENT,
         "NoSuchEnv-v9"),
        (simulator_pb2.CollectTransitionsRequest(env_id="", num_steps=10), grpc.StatusCode.INVALID_ARGUMENT, "env_id"),
        (simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=0), grpc.StatusCode.INVALID_ARGUMENT,
         "num_steps"),
        (simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=5, append_to_dataset_id="ds-nope"),
         grpc.StatusCode.NOT_FOUND, "ds-nope"),
    ],
)
def test_collect_rejects_bad_input(
    stub: simulator_pb2_grpc.SimulatorServiceStub, request_: object, code: grpc.StatusCode, fragment: str
) -> None:
    error = rpc_error(lambda: stub.CollectTransitions(request_, timeout=T))
    assert error.code() == code
    assert fragment in error.details()


def test_unknown_ids_are_not_found(stub: simulator_pb2_grpc.SimulatorServiceStub) -> None:
    calls = [
        lambda: stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id="ds-missing"), timeout=T),
        lambda: stub.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id="wm-missing"), timeout=T),
        lambda: stub.FitWorldModel(simulator_pb2.FitWorldModelRequest(dataset_id="ds-missing"), timeout=T),
        lambda: stub.Simulate(simulator_pb2.SimulateRequest(model_id="wm-missing", num_paths=1, horizon=1), timeout=T),
    ]
    for call in calls:
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    # A path is no id at all (plasma.ids): refused before any store is asked.
    error = rpc_error(lambda: stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id="../../etc"), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()


def test_simulate_rejects_bad_requests_and_keeps_serving(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model: simulator_pb2.WorldModel
) -> None:
    wrong_width = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=1, horizon=5)
    wrong_width.policy.mlp.weights.append(tensors.to_proto(np.zeros((2, 5), np.float32)))  # obs has 4 dims
    wrong_width.policy.mlp.biases.append(tensors.to_proto(np.zeros(2, np.float32)))
    wrong_width.policy.mlp.activation = simulator_pb2.ACTIVATION_TANH
    wrong_width.policy.mlp.obs_mean.CopyFrom(tensors.to_proto(np.zeros(4, np.float32)))
    wrong_width.policy.mlp.obs_std.CopyFrom(tensors.to_proto(np.ones(4, np.float32)))
    truncated_tensor = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=1, horizon=5)
    truncated_tensor.policy.mlp.CopyFrom(wrong_width.policy.mlp)
    truncated_tensor.policy.mlp.weights[0].data = b"\x00" * 3
    bad = [
        (simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=0, horizon=5), "num_paths"),
        (simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=1, horizon=5000), "horizon"),
        (wrong_width, "4"),
        (truncated_tensor, "bytes"),
        (simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=1, horizon=5,
                                       label_with_planner=simulator_pb2.PlannerConfig(num_samples=4, num_elites=8)),
         "num_elites"),
    ]
    for request, fragment in bad:
        error = rpc_error(lambda request=request: stub.Simulate(request, timeout=T))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert fragment in error.details()
    ok = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=1, horizon=5)
    assert len(list(stub.Simulate(ok, timeout=T))) == 1


def test_fit_rejects_bad_config(stub: simulator_pb2_grpc.SimulatorServiceStub, dataset: simulator_pb2.Dataset) -> None:
    request = simulator_pb2.FitWorldModelRequest(
        dataset_id=dataset.dataset_id, config=simulator_pb2.WorldModelConfig(holdout_fraction=0.9))
    error = rpc_error(lambda: stub.FitWorldModel(request, timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holdout_fraction" in error.details()


def test_append_creates_a_new_dataset_with_both_parts(
    stub: simulator_pb2_grpc.SimulatorServiceStub, dataset: simulator_pb2.Dataset
) -> None:
    request = simulator_pb2.CollectTransitionsRequest(
        env_id="CartPole-v1", num_steps=50, seed=8, append_to_dataset_id=dataset.dataset_id)
    combined = list(stub.CollectTransitions(request, timeout=T))[-1].dataset
    assert combined.dataset_id != dataset.dataset_id
    assert combined.num_transitions == dataset.num_transitions + 50


def test_health_and_reflection(store: Path, stub: simulator_pb2_grpc.SimulatorServiceStub) -> None:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=simulator_server.SERVICE_NAME), timeout=T)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=T)
        names = {s.name for answer in answers for s in answer.list_services_response.service}
        assert simulator_server.SERVICE_NAME in names


def test_a_new_server_on_the_same_store_keeps_everything(
    store: Path, dataset: simulator_pb2.Dataset, model: simulator_pb2.WorldModel
) -> None:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        restarted = simulator_pb2_grpc.SimulatorServiceStub(channel)
        assert restarted.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=dataset.dataset_id),
                                    timeout=T).dataset == dataset
        assert restarted.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=model.model_id),
                                       timeout=T).model == model
        request = simulator_pb2.SimulateRequest(model_id=model.model_id, num_paths=2, horizon=10, seed=1)
        assert len(list(restarted.Simulate(request, timeout=T))) == 2
