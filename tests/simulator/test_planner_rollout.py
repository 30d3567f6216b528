"""Phantom paths and the CEM planner, in a small CartPole world model (and a Pendulum one for box actions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.planning import PlannerConfig, plan
from plasma.mbrl.rollout import simulate, start_states
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import MlpWeights, PhantomPath, Transitions

SMALL_MODEL = WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=500, batch_size=128)
SMALL_PLANNER = PlannerConfig(horizon=10, num_samples=16, num_iterations=2, num_elites=4)
CARTPOLE = task_for("CartPole-v1")
PENDULUM = task_for("Pendulum-v1")



@pytest.fixture(scope="module")
def cartpole() -> tuple[EnsembleWorldModel, Transitions]:
    spec, data = collect("CartPole-v1", 400, seed=0)
    return fit(spec, data, SMALL_MODEL)[0], data


def _paths(model: EnsembleWorldModel, data: Transitions, **overrides) -> list[PhantomPath]:
    kwargs = dict(policy=None, num_paths=8, horizon=50, seed=0, start_pool=start_states(data, "episode_starts"),
                  label_with_planner=None, reward_source="task", task=CARTPOLE)
    return list(simulate(model, **{**kwargs, **overrides}))


def test_paths_end_at_their_first_predicted_termination(cartpole) -> None:
    model, data = cartpole
    paths = _paths(model, data, num_paths=70, horizon=100)  # more than one batch of 64
    assert len(paths) == 70
    ended_early = 0
    for path in paths:
        steps = path.length
        assert 1 <= steps <= 100
        assert path.observations.shape == (steps + 1, 4) and path.actions.shape == (steps,)
        assert path.uncertainty.shape == (steps,) and (path.uncertainty >= 0).all()
        assert path.expert_actions is None
        terminated = CARTPOLE.terminated(torch.as_tensor(path.observations[1:])).numpy()
        np.testing.assert_array_equal(path.dones, terminated)  # no step after a termination
        assert not path.dones[:-1].any()
        ended_early += steps < 100
        assert path.dones[-1] == (steps < 100)
        np.testing.assert_array_equal(path.rewards, np.ones(steps))
    assert ended_early > 60  # random actions topple the pole within 100 steps


def test_the_same_seed_gives_the_same_paths(cartpole) -> None:
    model, data = cartpole
    first, again, other = (_paths(model, data, seed=s, policy=SMALL_PLANNER) for s in (3, 3, 4))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert any(a.length != b.length or not np.array_equal(a.actions, b.actions)
               for a, b in zip(first, other, strict=True))


def test_planner_balances_the_pole_far_longer_than_random_actions(cartpole) -> None:
    model, data = cartpole
    random_steps = np.mean([p.length for p in _paths(model, data, num_paths=16, horizon=100)])
    planned = _paths(model, data, num_paths=16, horizon=100, policy=SMALL_PLANNER, label_with_planner=SMALL_PLANNER)
    planned_steps = np.mean([p.length for p in planned])
    assert planned_steps > 80 and planned_steps > 3 * random_steps
    # Driven by the planner that labels it, a path's labels are its actions.
    for path in planned:
        np.testing.assert_array_equal(path.expert_actions, path.actions)


def test_policy_paths_carry_the_planners_labels(cartpole) -> None:
    model, data = cartpole
    always_left = MlpWeights([np.zeros((2, 4), np.float32)], [np.array([1.0, 0.0], np.float32)], "tanh",
                             np.zeros(4, np.float32), np.ones(4, np.float32))
    paths = _paths(model, data, policy=always_left, label_with_planner=SMALL_PLANNER)
    actions = np.concatenate([p.actions for p in paths])
    labels = np.concatenate([p.expert_actions for p in paths])
    assert (actions == 0).all()
    assert labels.shape == actions.shape and (labels == 1).mean() > 0.5  # the planner pushes back


def test_learned_reward_and_termination(cartpole) -> None:
    model, data = cartpole
    paths = _paths(model, data, num_paths=16, reward_source="learned", task=None)
    rewards = np.concatenate([p.rewards for p in paths])
    assert np.abs(rewards - 1).max() < 0.1
    assert all(not p.dones[:-1].any() for p in paths)


def test_clear_errors_for_bad_requests(cartpole) -> None:
    model, data = cartpole
    with pytest.raises(ValueError, match="reward_source 'learned'"):
        _paths(model, data, task=None)
    wide = MlpWeights([np.zeros((2, 5), np.float32)], [np.zeros(2, np.float32)], "tanh",
                      np.zeros(5, np.float32), np.ones(5, np.float32))
    with pytest.raises(ValueError, match="observation has 4 dims"):
        _paths(model, data, policy=wide)
    with pytest.raises(ValueError, match="start_pool"):
        _paths(model, data, start_pool=np.zeros((3, 2), np.float32))


def test_start_states_are_episode_starts_or_any_state(cartpole) -> None:
    _, data = cartpole
    starts = start_states(data, "episode_starts")
    assert len(starts) == len(np.unique(data.episode_ids))
    np.testing.assert_array_equal(starts[0], data.obs[0])
    assert start_states(data, "any").shape == data.obs.shape


def test_box_planner_stays_in_bounds_and_beats_random_on_pendulum() -> None:
    spec, data = collect("Pendulum-v1", 400, seed=0)
    model = fit(spec, data, SMALL_MODEL)[0]
    obs = torch.as_tensor(data.obs[:16])
    actions = plan(model, obs, SMALL_PLANNER, task=PENDULUM, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (16, 1) and actions.abs().max() <= 2.0
    common = dict(num_paths=16, horizon=30, seed=0, start_pool=start_states(data, "any"), reward_source="task",
                  task=PENDULUM)
    random_return = np.mean([p.rewards.sum() for p in simulate(model, policy=None, **common)])
    planned_return = np.mean([p.rewards.sum() for p in simulate(model, policy=SMALL_PLANNER, **common)])
    assert planned_return > random_return + 20
