"""The learned objective: where real episodes ended (plasma.mbrl.audit.episode_ends) is the termination wherever the
data shows such boundaries, in place of the termination head, known tasks untouched; a reward the data never varied
is predicted as that constant everywhere."""

from __future__ import annotations

import numpy as np
import torch

from plasma.mbrl import tasks
from plasma.mbrl.audit import Support, episode_ends
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import WorldModelConfig
from plasma.mbrl.planning import rewards_and_dones


def _support(end_low: list[float], end_high: list[float]) -> Support:
    return Support(obs_low=np.array([-1.0, -0.2]), obs_high=np.array([1.0, 0.2]), max_jump=np.array([0.2, 0.2]),
                   reward_low=1.0, reward_high=1.0, disagreement_threshold=0.05, end_low=np.array(end_low),
                   end_high=np.array(end_high))


def test_a_state_past_the_midpoint_to_the_nearest_real_end_is_terminal() -> None:
    # Episodes ended with obs[1] at 0.22 and beyond, and at -0.24 and beyond; obs[0] never ended one.
    ends = episode_ends(_support([-np.inf, -0.24], [np.inf, 0.22]))
    assert ends is not None
    states = torch.tensor([[0.0, 0.0], [5.0, 0.2], [0.0, 0.21 + 1e-3], [0.0, -0.22 - 1e-3], [0.0, -0.21]])
    assert ends(states).tolist() == [False, False, True, True, False]


def test_data_without_a_termination_boundary_adds_none() -> None:
    assert episode_ends(_support([-np.inf, -np.inf], [np.inf, np.inf])) is None


def test_the_boundaries_stand_in_for_the_head_where_the_data_shows_them_and_a_known_task_ignores_them() -> None:
    ends = episode_ends(_support([-np.inf, -0.24], [np.inf, 0.22]))
    obs = torch.zeros(3, 2)
    next_obs = torch.tensor([[0.0, 0.0], [0.0, 0.3], [0.0, 0.0]])
    head = torch.tensor([0.1, 0.1, 0.9])  # the head's termination probabilities
    reward, done = rewards_and_dones(None, obs, torch.zeros(3), next_obs, torch.ones(3), head, ends)
    assert done.tolist() == [False, True, False] and reward.tolist() == [1.0, 1.0, 1.0]
    _, done = rewards_and_dones(None, obs, torch.zeros(3), next_obs, torch.ones(3), head, None)
    assert done.tolist() == [False, False, True]  # no boundary in the data: the head
    known = tasks.task_for("CartPole-v1")
    cartpole_next = torch.zeros(3, 4)
    _, done = rewards_and_dones(known, torch.zeros(3, 4), torch.zeros(3), cartpole_next, torch.ones(3), head, ends)
    assert done.tolist() == [False, False, False]


def test_a_reward_the_data_never_varied_is_predicted_as_that_constant_far_from_the_data() -> None:
    spec, data = collect("CartPole-v1", 100, seed=0)  # every reward 1
    model, metrics = fit(spec, data, WorldModelConfig(train_steps=20))
    far = torch.tensor(np.random.default_rng(0).normal(0.0, 3.0, (64, 4)), dtype=torch.float32)
    step = model.step(far, torch.zeros(64, dtype=torch.int64), torch.arange(64) % model.config.ensemble_size)
    assert step.reward.tolist() == [1.0] * 64
    assert metrics["holdout_reward_mse"] == 0.0
