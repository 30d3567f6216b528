"""ForecastErrors against a real simulator on port 0, with a world model fitted on real CartPole steps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import tensors
from plasma.server.errors import Cancelled
from plasma.simulator.v1 import audit_pb2, simulator_pb2, simulator_pb2_grpc
from services.simulator import forecasts, requests
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.simulator.store import SimulatorStore
from tests.conftest import rpc_error, running

T = 60.0
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300, seed=1)
CENTRED = [0.0, 0.0, 0.0, 0.0]
# Pole already 0.17 rad over and falling further right: CartPole ends at 0.2095 rad.
NEAR_FAILURE = [0.0, 0.5, 0.17, 1.0]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("forecast-store"))


@pytest.fixture(scope="module")
def stub(store_dir: Path) -> Iterator[simulator_pb2_grpc.SimulatorServiceStub]:
    config = Config(address="127.0.0.1:0", store_dir=store_dir)
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        yield simulator_pb2_grpc.SimulatorServiceStub(channel)


@pytest.fixture(scope="module")
def model_id(stub: simulator_pb2_grpc.SimulatorServiceStub) -> str:
    collected = list(stub.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=1000, seed=3), timeout=T))
    dataset_id = collected[-1].dataset.dataset_id
    fitted = list(stub.FitWorldModel(
        simulator_pb2.FitWorldModelRequest(dataset_id=dataset_id, config=SMALL_MODEL), timeout=120))
    return fitted[-1].model.model_id


def _request(model_id: str, start: list[float], **fields: object) -> simulator_pb2.ForecastErrorsRequest:
    request = simulator_pb2.ForecastErrorsRequest(
        model_id=model_id, start_observation=tensors.to_proto(np.array(start, dtype=np.float32)), **fields)
    if not request.HasField("policy"):
        request.policy.random.SetInParent()
    return request


def _array(tensor: object) -> np.ndarray:
    return tensors.from_proto(tensor)  # type: ignore[arg-type]


def test_forecast_has_the_documented_shapes_and_consistent_statistics(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    reply = stub.ForecastErrors(_request(model_id, CENTRED, horizon=40, num_samples=64, seed=1), timeout=T)
    mean, lower, upper = (_array(t) for t in (reply.mean_observations, reply.lower_observations,
                                              reply.upper_observations))
    assert mean.shape == lower.shape == upper.shape == (41, 4)
    np.testing.assert_allclose(mean[0], CENTRED, atol=1e-6)
    assert (lower <= mean + 1e-5).all() and (mean <= upper + 1e-5).all()
    for field in (reply.failure_probability, reply.model_error_probability):
        probability = _array(field)
        assert probability.shape == (40,)
        assert ((probability >= 0) & (probability <= 1)).all()
        assert (np.diff(probability) >= 0).all()
    assert _array(reply.disagreement).shape == (40,)
    assert 0 < len(reply.samples) <= 64
    for path in reply.samples:
        np.testing.assert_allclose(_array(path.observations)[0], CENTRED, atol=1e-6)
    failure = _array(reply.failure_probability)
    expected = int(np.flatnonzero(failure >= 0.5)[0]) if (failure >= 0.5).any() else -1
    assert reply.likely_failure_step == expected


def test_same_seed_gives_the_same_forecast(stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str) -> None:
    request = _request(model_id, CENTRED, horizon=20, num_samples=32, seed=5)
    assert stub.ForecastErrors(request, timeout=T) == stub.ForecastErrors(request, timeout=T)


def test_a_start_near_the_failure_boundary_fails_earlier_than_a_centred_one(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    near = stub.ForecastErrors(_request(model_id, NEAR_FAILURE, horizon=100, num_samples=128, seed=2), timeout=T)
    centred = stub.ForecastErrors(_request(model_id, CENTRED, horizon=100, num_samples=128, seed=2), timeout=T)
    assert 0 <= near.likely_failure_step < 10
    centred_step = centred.likely_failure_step if centred.likely_failure_step >= 0 else 100
    assert near.likely_failure_step < centred_step
    assert _array(near.failure_probability)[5] > _array(centred.failure_probability)[5]


def test_planner_keeps_the_pole_up_longer_than_random_actions(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    random = stub.ForecastErrors(_request(model_id, CENTRED, horizon=60, num_samples=32, seed=4), timeout=T)
    planned_request = _request(model_id, CENTRED, horizon=60, num_samples=32, seed=4)
    planned_request.policy.planner.SetInParent()
    planned = stub.ForecastErrors(planned_request, timeout=120)
    assert _array(planned.failure_probability)[-1] < _array(random.failure_probability)[-1]


def test_a_task_with_a_tighter_termination_fails_earlier(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    request = _request(model_id, CENTRED, horizon=60, num_samples=64, seed=7)
    environment = stub.ForecastErrors(request, timeout=T)
    inf = float("inf")
    request.task.tracking.target_observation[:] = [0.0, 0.0, 0.0, 0.0]
    request.task.tracking.state_weights[:] = [0.0, 0.0, 1.0, 0.0]
    request.task.tracking.alive_bonus = 1.0
    request.task.tracking.terminate_below[:] = [-inf, -inf, -0.05, -inf]  # the pole may lean 0.05 rad, not 0.21
    request.task.tracking.terminate_above[:] = [inf, inf, 0.05, inf]
    tight = stub.ForecastErrors(request, timeout=T)
    assert tight.likely_failure_step >= 0
    environment_step = environment.likely_failure_step if environment.likely_failure_step >= 0 else 60
    assert tight.likely_failure_step < environment_step


def test_model_error_probability_follows_the_audit(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    request = _request(model_id, CENTRED, horizon=30, num_samples=32, seed=6)
    request.audit.disabled = True
    trusting = stub.ForecastErrors(request, timeout=T)
    assert not _array(trusting.model_error_probability).any()
    assert trusting.likely_model_error_step == -1
    request.audit.disabled = False
    request.audit.disagreement_threshold = 1e-9  # no step of any path is that certain
    suspicious = stub.ForecastErrors(request, timeout=T)
    np.testing.assert_array_equal(_array(suspicious.model_error_probability), 1.0)
    assert suspicious.likely_model_error_step == 0
    assert all(path.audit.verdict == audit_pb2.AUDIT_VERDICT_REJECT for path in suspicious.samples)


def test_a_forecast_nobody_waits_for_stops(store_dir: Path, model_id: str) -> None:
    store = SimulatorStore(store_dir)
    request = _request(model_id, CENTRED, horizon=10, num_samples=256, seed=1)
    asked: list[int] = []

    def active() -> bool:
        asked.append(1)
        return len(asked) < 2  # the caller leaves after the first batch

    with pytest.raises(Cancelled, match="after 64 of 256 paths"):
        forecasts.forecast(request, store, requests.ModelCache(store, capacity=1), active)


@pytest.mark.parametrize(
    ("change", "code", "mentions"),
    [
        ({"horizon": 0}, grpc.StatusCode.INVALID_ARGUMENT, "horizon"),
        ({"horizon": 1001}, grpc.StatusCode.INVALID_ARGUMENT, "horizon"),
        ({"num_samples": 4097}, grpc.StatusCode.INVALID_ARGUMENT, "num_samples"),
        ({"num_samples": -1}, grpc.StatusCode.INVALID_ARGUMENT, "num_samples"),
        ({"start": [0.0, 0.0, 0.0]}, grpc.StatusCode.INVALID_ARGUMENT, "start_observation"),
        ({"start": [0.0, float("nan"), 0.0, 0.0]}, grpc.StatusCode.INVALID_ARGUMENT, "finite"),
        ({"start": None}, grpc.StatusCode.INVALID_ARGUMENT, "start_observation"),
        ({"model_id": "wm-missing"}, grpc.StatusCode.NOT_FOUND, "wm-missing"),
        ({"seed": -1}, grpc.StatusCode.INVALID_ARGUMENT, "seed"),
        ({"audit": {"min_valid_steps": -1}}, grpc.StatusCode.INVALID_ARGUMENT, "min_valid_steps"),
    ],
)
def test_bad_requests_fail_with_a_clear_status(
    stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str, change: dict[str, object],
    code: grpc.StatusCode, mentions: str,
) -> None:
    fields: dict[str, object] = {"horizon": 10, "num_samples": 8, "model_id": model_id, **change}
    start = fields.pop("start", CENTRED)
    request = _request(str(fields.pop("model_id")), CENTRED, **fields)
    if start is None:
        request.ClearField("start_observation")
    else:
        request.start_observation.CopyFrom(tensors.to_proto(np.array(start, dtype=np.float32)))
    error = rpc_error(lambda: stub.ForecastErrors(request, timeout=T))
    assert error.code() == code
    assert mentions in error.details()
