"""What the fit warns about: each rule of plasma.mbrl.diagnosis on small crafted datasets and metrics, and a real
simulator on port 0 that warns about an uploaded dataset whose reward never changes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from plasma.mbrl import diagnosis
from plasma.mbrl.types import Transitions
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.simulator.v1 import simulator_pb2
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import running
from tests.support import linear_system


def _transitions(rewards: np.ndarray, actions: np.ndarray, terminated: np.ndarray | None = None) -> Transitions:
    n = len(rewards)
    obs = np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)
    done = np.zeros(n, dtype=bool) if terminated is None else terminated
    return Transitions(obs, actions, rewards.astype(np.float32), obs + 0.1, done, np.zeros(n, dtype=bool),
                       np.arange(n) // 50)


def _kinds(findings: list[diagnosis.Finding]) -> set[str]:
    return {f.kind for f in findings}


def test_a_constant_reward_and_no_termination_are_found() -> None:
    actions = np.random.default_rng(0).integers(0, 2, 200)
    found = diagnosis.data_findings(_transitions(np.full(200, -1.0), actions), discrete_actions=2)
    assert _kinds(found) == {diagnosis.CONSTANT_REWARD, diagnosis.NO_TERMINATIONS}
    assert "-1" in found[0].message  # the figure itself


def test_a_constant_reward_with_terminations_is_a_survival_bonus_not_a_missing_signal() -> None:
    # CartPole: 1 per step, and the signal is when episodes end.
    actions = np.random.default_rng(0).integers(0, 2, 200)
    assert diagnosis.data_findings(_transitions(np.ones(200), actions, np.arange(200) % 20 == 19), 2) == []


def test_a_reward_the_actions_alone_explain_is_found_a_goal_never_reached() -> None:
    # MountainCarContinuous's random data: -0.1 a^2 every step, the +100 of the goal never seen.
    actions = np.random.default_rng(0).uniform(-1, 1, (300, 1)).astype(np.float32)
    terminated = np.zeros(300, dtype=bool)
    terminated[49::50] = True
    found = diagnosis.data_findings(_transitions(-0.1 * actions[:, 0] ** 2, actions, terminated))
    assert _kinds(found) == {diagnosis.REWARD_FROM_ACTIONS_ONLY}


def test_a_reward_of_the_state_with_terminations_is_not_warned_about() -> None:
    data = _transitions(np.zeros(300), np.random.default_rng(0).uniform(-1, 1, (300, 1)).astype(np.float32),
                        np.arange(300) % 50 == 49)
    state_reward = -(data.obs**2).sum(1) - 0.001 * data.actions[:, 0] ** 2  # Pendulum-like: mostly the state
    found = diagnosis.data_findings(Transitions(data.obs, data.actions, state_reward, data.next_obs, data.terminated,
                                                data.truncated, data.episode_ids))
    assert found == []
    assert diagnosis.action_explained_share(state_reward, data.actions) < 0.05


@pytest.mark.parametrize(("holdout_nll", "warned"), [(-2.0, False), (2.0, False), (2.6, True), (287.9, True)])
def test_a_held_out_nll_far_above_training_is_found(holdout_nll: float, warned: bool) -> None:
    # Training NLL -2: the rule's 4.5 nats per dimension put the line at 2.5.
    found = diagnosis.fit_findings({"holdout_nll": holdout_nll, "train_nll": -2.0})
    assert _kinds(found) == ({diagnosis.HOLDOUT_GAP} if warned else set())


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlasmaClient]:
    config = Config(address="127.0.0.1:0", store_dir=tmp_path_factory.mktemp("warnings"))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address, \
            PlasmaClient(Endpoints(simulator=address)) as plasma:
        yield plasma


def test_an_uploaded_dataset_with_a_constant_reward_gets_the_no_signal_warning(client: PlasmaClient) -> None:
    arrays = linear_system.rollouts(episodes=6, length=50, seed=0)
    arrays["rewards"] = np.ones_like(arrays["rewards"])  # a survival bonus that never changes
    dataset = client.upload(linear_system.SPEC, arrays, name="constant-reward")
    model = client.fit_world_model(dataset.dataset_id, simulator_pb2.WorldModelConfig(train_steps=50))
    kinds = {w.kind for w in model.warnings}
    assert simulator_pb2.MODEL_WARNING_KIND_CONSTANT_REWARD in kinds
    assert simulator_pb2.MODEL_WARNING_KIND_NO_TERMINATIONS in kinds
    stored = client.simulator.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=model.model_id)).model
    assert stored.warnings == model.warnings


def test_a_dataset_with_a_reward_signal_gets_no_data_warning(client: PlasmaClient) -> None:
    arrays = linear_system.rollouts(episodes=6, length=50, seed=1)
    arrays["terminated"] = arrays["truncated"]  # every episode ends: there are terminations to learn
    arrays["truncated"] = np.zeros_like(arrays["truncated"])
    dataset = client.upload(linear_system.SPEC, arrays, name="state-reward")
    model = client.fit_world_model(dataset.dataset_id, simulator_pb2.WorldModelConfig(train_steps=50))
    assert not {w.kind for w in model.warnings} & {simulator_pb2.MODEL_WARNING_KIND_CONSTANT_REWARD,
                                                    simulator_pb2.MODEL_WARNING_KIND_REWARD_FROM_ACTIONS_ONLY,
                                                    simulator_pb2.MODEL_WARNING_KIND_NO_TERMINATIONS}
