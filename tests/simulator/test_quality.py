"""World-model quality on held-out episodes, and fine-tuning, against a real server on port 0 with data of a
made-up linear system uploaded without any Gymnasium environment."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from plasma.common.v1 import common_pb2
from plasma.mbrl import quality
from plasma.sdk.quality_table import format_quality
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import rpc_error, running
from tests.support import linear_system

T = 120.0
Stub = simulator_pb2_grpc.SimulatorServiceStub
SMALL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=300, seed=1)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    config = Config(address="127.0.0.1:0", store_dir=tmp_path_factory.mktemp("quality-store"))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        yield Stub(channel)


def _upload(stub: Stub, name: str, arrays: dict[str, np.ndarray], append_to: str = "") -> simulator_pb2.Dataset:
    responses = stub.UploadTransitions(linear_system.requests(name, arrays, append_to=append_to), timeout=T)
    return list(responses)[-1].dataset


def _fit(stub: Stub, dataset_id: str, config: simulator_pb2.WorldModelConfig = SMALL, init: str = "",
         ) -> tuple[simulator_pb2.WorldModel, dict[str, simulator_pb2.WorldModelQuality]]:
    request = simulator_pb2.FitWorldModelRequest(dataset_id=dataset_id, config=config, init_from_model_id=init)
    responses = list(stub.FitWorldModel(request, timeout=T))
    reports = {r.quality.stage: r.quality.quality for r in responses if r.HasField("quality")}
    return responses[-1].model, reports


@pytest.fixture(scope="module")
def dataset(stub: Stub) -> simulator_pb2.Dataset:
    return _upload(stub, "linear", linear_system.rollouts(episodes=20, length=60, seed=0))


@pytest.fixture(scope="module")
def fitted(stub: Stub, dataset: simulator_pb2.Dataset) -> tuple[simulator_pb2.WorldModel, dict]:
    return _fit(stub, dataset.dataset_id)


def test_window_starts_stay_inside_held_out_episodes() -> None:
    episode_ids = np.repeat(np.arange(4), [5, 3, 6, 2])  # rows 0-4, 5-7, 8-13, 14-15
    held = np.concatenate([np.arange(5, 8), np.arange(14, 16)])  # episodes 1 and 3
    assert quality.window_starts(episode_ids, held, 1).tolist() == [5, 6, 7, 14, 15]
    assert quality.window_starts(episode_ids, held, 3).tolist() == [5]
    assert quality.window_starts(episode_ids, held, 4).tolist() == []


def test_quality_of_a_model_of_logged_data_makes_sense(
    stub: Stub, dataset: simulator_pb2.Dataset, fitted: tuple[simulator_pb2.WorldModel, dict]
) -> None:
    model, reports = fitted
    measured = model.quality
    assert set(reports) == {"after"} and reports["after"] == measured
    assert measured.dataset_id == dataset.dataset_id
    assert measured.holdout_transitions == 4 * 60  # 20 % of 20 episodes, held out whole
    assert [h.steps for h in measured.horizons] == [1, 10, 50]
    for horizon in measured.horizons:
        assert horizon.windows == 4 * (60 - horizon.steps + 1)
        assert len(horizon.model_rmse_per_dim) == len(horizon.naive_rmse_per_dim) == 3
        assert horizon.model_rmse < horizon.naive_rmse
    one_step = measured.horizons[0]
    # The system moves about 0.1 std per step and its noise is 0.01: a fitted model is far better than "stays".
    assert one_step.model_rmse < 0.5 * one_step.naive_rmse
    # Overall RMSE is the root of the mean of the per-dimension mean squares.
    assert one_step.model_rmse == pytest.approx(np.sqrt(np.mean(np.square(one_step.model_rmse_per_dim))))
    assert 0.6 <= measured.coverage_90 <= 1.0
    assert len(measured.coverage_90_per_dim) == 3
    assert np.isfinite(measured.nll)
    stored = stub.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=model.model_id), timeout=T).model
    assert stored.quality == measured and stored.parent_model_id == ""
    table = format_quality(measured, "after").splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["1", "10", "50"]
    assert f"{measured.coverage_90:.3f}" in table[-1]


def test_horizons_longer_than_the_held_out_episodes_are_left_out(stub: Stub) -> None:
    short = _upload(stub, "short-episodes", linear_system.rollouts(episodes=10, length=20, seed=2))
    model, _ = _fit(stub, short.dataset_id, simulator_pb2.WorldModelConfig(
        ensemble_size=2, hidden_size=32, num_layers=2, train_steps=50, seed=1))
    assert [h.steps for h in model.quality.horizons] == [1, 10]


def test_fine_tuning_reports_before_and_after_and_does_not_get_worse(
    stub: Stub, dataset: simulator_pb2.Dataset, fitted: tuple[simulator_pb2.WorldModel, dict]
) -> None:
    parent = fitted[0]
    # New logged data from a wider range of states than the parent saw, appended as version 2.
    wider = _upload(stub, "", linear_system.rollouts(episodes=20, length=60, seed=5, spread=3.0),
                    append_to=dataset.dataset_id)
    assert wider.version == 2
    child, reports = _fit(stub, wider.dataset_id, simulator_pb2.WorldModelConfig(train_steps=300, seed=1),
                          init=parent.model_id)
    assert child.parent_model_id == parent.model_id
    assert (child.config.ensemble_size, child.config.hidden_size, child.config.num_layers) == (3, 64, 2)
    before, after = reports["before"], reports["after"]
    assert after == child.quality
    assert before.dataset_id == after.dataset_id == wider.dataset_id
    assert before.holdout_transitions == after.holdout_transitions
    # Same held-out rows, same units: the naive baseline is identical, so the model errors compare directly.
    assert [h.naive_rmse for h in before.horizons] == [h.naive_rmse for h in after.horizons]
    assert after.horizons[0].model_rmse <= before.horizons[0].model_rmse


def test_fine_tuning_needs_the_same_spec_and_architecture(
    stub: Stub, dataset: simulator_pb2.Dataset, fitted: tuple[simulator_pb2.WorldModel, dict]
) -> None:
    parent_id = fitted[0].model_id
    error = rpc_error(lambda: _fit(stub, dataset.dataset_id, simulator_pb2.WorldModelConfig(hidden_size=128),
                                   init=parent_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "hidden_size=128 differs from hidden_size=64" in error.details()
    error = rpc_error(lambda: _fit(stub, dataset.dataset_id, init="wm-000000000000"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    two_dims = common_pb2.EnvSpec(
        observation_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[2]),
        action_space=linear_system.SPEC.action_space,
    )
    arrays = linear_system.rollouts(episodes=3, length=10, seed=3)
    arrays = {**arrays, "observations": arrays["observations"][:, :2],
              "next_observations": arrays["next_observations"][:, :2]}
    requests = [linear_system.header("two-dims", spec=two_dims),
                simulator_pb2.UploadTransitionsRequest(batch=linear_system.batch(arrays)), linear_system.commit(1)]
    other = list(stub.UploadTransitions(iter(requests), timeout=T))[-1].dataset
    error = rpc_error(lambda: _fit(stub, other.dataset_id, init=parent_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "box(shape=[3])" in error.details() and "box(shape=[2])" in error.details()
