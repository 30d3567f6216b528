"""Known reward and termination functions of Gymnasium tasks, applied to predicted states (torch, batched).

When the task is known, imagined rollouts need not trust the world model's learned reward and
termination heads, which are the weakest part of a model fitted on a few hundred steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# (obs [B, obs_dim], actions [B] or [B, act_dim], next_obs [B, obs_dim]) -> reward [B]
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# next_obs [B, obs_dim] -> terminated [B] bool
TerminationFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Task:
    env_id: str
    reward: RewardFn
    terminated: TerminationFn


# Gymnasium CartPole-v1 thresholds (cartpole.py): the episode ends once the cart or the pole leaves them.
_CARTPOLE_X_LIMIT = 2.4
_CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360


def _cartpole_reward(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # Gymnasium pays 1 for every step, the terminating one included.
    return torch.ones(obs.shape[0], dtype=torch.float32)


def _cartpole_terminated(next_obs: torch.Tensor) -> torch.Tensor:
    x, theta = next_obs[:, 0], next_obs[:, 2]
    return (x < -_CARTPOLE_X_LIMIT) | (x > _CARTPOLE_X_LIMIT) | (theta < -_CARTPOLE_THETA_LIMIT) | (
        theta > _CARTPOLE_THETA_LIMIT
    )


_PENDULUM_MAX_TORQUE = 2.0


def _pendulum_reward(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # Gymnasium charges the state *before* the step. atan2 because predicted cos/sin drift off the circle.
    theta = torch.atan2(obs[:, 1], obs[:, 0])
    theta_dot = obs[:, 2]
    torque = actions.reshape(obs.shape[0], -1)[:, 0].clamp(-_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)


def _never_terminated(next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(next_obs.shape[0], dtype=torch.bool)


_TASKS = {
    "CartPole-v1": Task("CartPole-v1", _cartpole_reward, _cartpole_terminated),
    "Pendulum-v1": Task("Pendulum-v1", _pendulum_reward, _never_terminated),
}


def task_for(env_id: str) -> Task | None:
    """The known task of a Gymnasium id, or None when Plasma has to rely on the learned heads."""
    return _TASKS.get(env_id)
