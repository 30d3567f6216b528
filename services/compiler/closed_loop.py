"""Closed-loop phantom paths of a compiled graph in the run's world model: the states a policy really visits
when its own (possibly quantized) decisions steer it, and the return it earns there.

Deterministic by construction: every path follows one ensemble member's mean prediction (no sampled noise),
from start states and members drawn once per compilation, so two graphs are compared on equal terms and a
difference in their paths comes from their decisions alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import rewards_and_dones
from plasma.mbrl.rollout import start_states
from plasma.mbrl.tasks import Task
from plasma.mbrl.types import Transitions

# Paths per graph: enough visited states (up to paths x horizon) to measure agreement on, in well under a second.
PATHS = 16
# A policy's actions for a batch of observations [B, obs_dim] float32 -> [B] int64 or [B, act_dim] float32.
Act = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scenario:
    """Where closed-loop paths run: the world model, the objective that scores them, and fixed starts."""

    model: EnsembleWorldModel
    task: Task | None  # None: the model's learned reward and termination heads
    starts: np.ndarray  # [paths, obs_dim] float32
    members: np.ndarray  # [paths] int64: the member each path follows
    horizon: int

    @classmethod
    def draw(cls, model: EnsembleWorldModel, task: Task | None, data: Transitions, which_starts: str,
             horizon: int, seed: int, paths: int = PATHS) -> Scenario:
        """Start states drawn (seeded) from the real data's pool the run trained from."""
        pool = start_states(data, which_starts)
        rng = np.random.default_rng(seed)
        starts = pool[rng.integers(0, len(pool), paths)].astype(np.float32)
        members = rng.integers(0, model.config.ensemble_size, paths).astype(np.int64)
        return cls(model, task, starts, members, horizon)


@dataclass(frozen=True)
class Rollouts:
    states: np.ndarray  # [n, obs_dim] float32: every state a decision was taken in
    returns: np.ndarray  # [paths] undiscounted
    magnitudes: np.ndarray  # [paths] summed |reward|: the size of a return, whatever the rewards' signs

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())


@torch.no_grad()
def rollout(scenario: Scenario, act: Act) -> Rollouts:
    """Each path runs until its first predicted termination (which still earns its reward) or the horizon."""
    model = scenario.model
    state = torch.from_numpy(scenario.starts.copy())
    members = torch.from_numpy(scenario.members)
    alive = torch.arange(state.shape[0])
    returns = torch.zeros(state.shape[0], dtype=torch.float64)
    magnitudes = torch.zeros_like(returns)
    visited: list[np.ndarray] = []
    for _ in range(scenario.horizon):
        observations = state.numpy()
        visited.append(observations.copy())
        actions = torch.from_numpy(np.asarray(act(observations)))
        next_state, learned_reward, done_prob = model.predict(state, actions, members[alive])
        reward, done = rewards_and_dones(scenario.task, state, actions, next_state, learned_reward, done_prob)
        returns.index_add_(0, alive, reward.double())
        magnitudes.index_add_(0, alive, reward.double().abs())
        keep = ~done
        alive, state = alive[keep], next_state[keep].contiguous()
        if alive.numel() == 0:
            break
    return Rollouts(np.concatenate(visited).astype(np.float32), returns.numpy(), magnitudes.numpy())
