"""Real-environment collection and MLP policy validation."""

from __future__ import annotations

import numpy as np
import pytest

from plasma.mbrl.collect import UnknownEnvironment, collect
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.types import MlpWeights


def _constant_policy(obs_dim: int, logits: list[float]) -> MlpWeights:
    """A one-layer policy whose output ignores the observation."""
    return MlpWeights(
        weights=[np.zeros((len(logits), obs_dim), dtype=np.float32)],
        biases=[np.asarray(logits, dtype=np.float32)],
        activation="tanh",
        obs_mean=np.zeros(obs_dim, dtype=np.float32),
        obs_std=np.ones(obs_dim, dtype=np.float32),
    )


def test_cartpole_random_transitions_have_consistent_shapes_and_episodes() -> None:
    reports: list[tuple[int, int, int]] = []
    spec, data = collect("CartPole-v1", 300, seed=3, progress=lambda *r: reports.append(r))
    assert spec.env_id == "CartPole-v1" and spec.action.n == 2 and spec.observation.shape == (4,)
    assert data.obs.shape == data.next_obs.shape == (300, 4) and data.obs.dtype == np.float32
    assert data.actions.shape == (300,) and data.actions.dtype == np.int64
    assert set(np.unique(data.actions)) == {0, 1}
    # Episodes are contiguous: ids never decrease, and each ended episode ends with a termination.
    assert (np.diff(data.episode_ids) >= 0).all()
    last_rows = np.flatnonzero(np.diff(data.episode_ids))
    assert len(last_rows) > 5 and data.terminated[last_rows].all()
    # Within an episode, each step starts where the previous one ended.
    same = data.episode_ids[1:] == data.episode_ids[:-1]
    np.testing.assert_array_equal(data.obs[1:][same], data.next_obs[:-1][same])
    assert 10 <= len(reports) <= 101 and reports[-1] == (300, 300, int(data.terminated.sum()))


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    _, first = collect("CartPole-v1", 100, seed=7)
    _, again = collect("CartPole-v1", 100, seed=7)
    _, other = collect("CartPole-v1", 100, seed=8)
    np.testing.assert_array_equal(first.obs, again.obs)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert not np.array_equal(first.obs, other.obs)


def test_pendulum_box_actions_and_time_limit_truncation() -> None:
    spec, data = collect("Pendulum-v1", 250, seed=0)
    assert spec.action.kind == "box" and spec.action.low == (-2.0,) and spec.action.high == (2.0,)
    assert data.actions.shape == (250, 1) and data.actions.dtype == np.float32
    assert np.abs(data.actions).max() <= 2.0
    # Pendulum stops at its own 200-step limit: truncated, never terminated.
    assert data.truncated[199] and data.truncated.sum() == 1 and not data.terminated.any()
    assert data.episode_ids[199] == 0 and data.episode_ids[200] == 1


def test_mlp_policy_acts_and_epsilon_explores() -> None:
    always_right = _constant_policy(4, [0.0, 1.0])
    _, greedy = collect("CartPole-v1", 50, seed=0, policy=always_right)
    assert (greedy.actions == 1).all()
    _, noisy = collect("CartPole-v1", 200, seed=0, policy=always_right, epsilon=1.0)
    assert 0.3 < (noisy.actions == 0).mean() < 0.7


def test_unknown_environment_names_the_id_and_suggests_real_ones() -> None:
    with pytest.raises(UnknownEnvironment, match=r"'NoSuchEnv-v0'.*CartPole-v1"):
        collect("NoSuchEnv-v0", 10, seed=0)
    with pytest.raises(UnknownEnvironment, match="did you mean CartPole-v1"):
        collect("CartPol-v1", 10, seed=0)


def test_mlp_shape_errors_say_what_to_fix() -> None:
    spec, _ = collect("CartPole-v1", 1, seed=0)
    bad_input = _constant_policy(4, [0.0, 1.0])
    bad_input.weights = [np.zeros((64, 5), dtype=np.float32), np.zeros((2, 64), dtype=np.float32)]
    bad_input.biases = [np.zeros(64, dtype=np.float32), np.zeros(2, dtype=np.float32)]
    with pytest.raises(ValueError, match=r"layer 0 weight is \[64, 5\] but the observation has 4 dims"):
        MlpPolicy(bad_input, spec)
    with pytest.raises(ValueError, match="outputs 3 values but the action space needs logits for 2 choices"):
        MlpPolicy(_constant_policy(4, [0.0, 1.0, 2.0]), spec)
    with pytest.raises(ValueError, match="obs_std"):
        MlpPolicy(MlpWeights(**{**vars(_constant_policy(4, [0.0, 1.0])), "obs_std": np.zeros(4)}), spec)
