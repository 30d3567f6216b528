"""Reward and termination functions applied to predicted states (torch, batched): the known objectives of
Gymnasium tasks, and tasks compiled from a TaskSpec (task.proto), e.g. tracking a target state.

When the task is known, imagined rollouts need not trust the world model's learned reward and
termination heads, which are the weakest part of a model fitted on a few hundred steps. A TaskSpec lets
one world model serve many objectives without running any user code on the server.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from plasma.mbrl.types import TaskSpecData, TrackingSpec
from plasma.spaces import EnvSpec

# (obs [B, obs_dim], actions [B] or [B, act_dim], next_obs [B, obs_dim]) -> reward [B]
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# next_obs [B, obs_dim] -> terminated [B] bool
TerminationFn = Callable[[torch.Tensor], torch.Tensor]


class TaskError(ValueError):
    """A malformed task spec; the message names the field and what to send instead."""


class UnknownObjective(LookupError):
    """An environment objective for an environment Plasma knows no reward and termination for."""


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
    return torch.ones(obs.shape[0], dtype=torch.float32, device=obs.device)


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
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


_TASKS = {
    "CartPole-v1": Task("CartPole-v1", _cartpole_reward, _cartpole_terminated),
    "Pendulum-v1": Task("Pendulum-v1", _pendulum_reward, _never_terminated),
}


def task_for(env_id: str) -> Task | None:
    """The known task of a Gymnasium id, or None when Plasma has to rely on the learned heads."""
    return _TASKS.get(env_id)


def resolve_reward_source(requested: str, known: Task | None, env_id: str) -> str:
    """"task" or "learned" for a requested reward source: "" (no preference) is the task's reward where Plasma
    knows one, else the learned heads. Raises ValueError for "task" where there is none."""
    if requested not in ("", "task", "learned"):
        raise ValueError(f"reward_source must be 'task', 'learned' or '', got {requested!r}")
    if requested == "task" and known is None:
        raise ValueError(f"reward_source task needs a reward Plasma knows, and {env_id or 'logged data'!r} has none; "
                         "use the learned reward")
    return requested or ("task" if known is not None else "learned")


def task_from_spec(data: TaskSpecData, env_spec: EnvSpec) -> Task | None:
    """Compiles a task spec for a model of `env_spec`; None means the world model's learned heads.

    Raises TaskError for a malformed spec and UnknownObjective for an environment objective that Plasma does
    not know, each saying what to send instead.
    """
    if data.objective == "learned":
        return None
    if data.objective == "environment":
        known = task_for(env_spec.env_id)
        if known is None:
            raise UnknownObjective(
                f"task objective 'environment' needs an environment Plasma knows ({', '.join(sorted(_TASKS))}), "
                f"and this model was fitted on {env_spec.env_id or 'logged data'!r}; use a tracking objective "
                "or the learned one"
            )
        return known
    if data.objective != "tracking" or data.tracking is None:
        raise TaskError(
            f"task objective must be environment, learned or tracking (with its spec), got {data.objective!r}"
        )
    return _tracking_task(data.tracking, env_spec)


def _tracking_task(spec: TrackingSpec, env_spec: EnvSpec) -> Task:
    obs_size = env_spec.observation.flat_dim
    # Discrete actions are charged as their index: one element.
    action_size = 1 if env_spec.action.kind == "discrete" else env_spec.action.flat_dim
    what = f"the observation has {obs_size} elements"
    target = _values("target_observation", spec.target_observation, obs_size, what, finite=True)
    weights = _values("state_weights", spec.state_weights, obs_size, what, finite=True, non_negative=True)
    what = f"the action has {action_size} element{'s' if action_size > 1 else ''}"
    action_weights = _values("action_weights", spec.action_weights, action_size, what, finite=True,
                             non_negative=True, default=0.0)
    target_action = _values("target_action", spec.target_action, action_size, what, finite=True, default=0.0)
    what = f"the observation has {obs_size} elements"
    below = _values("terminate_below", spec.terminate_below, obs_size, what, default=-math.inf)
    above = _values("terminate_above", spec.terminate_above, obs_size, what, default=math.inf)
    if not math.isfinite(spec.alive_bonus):
        raise TaskError(f"task tracking.alive_bonus must be finite, got {spec.alive_bonus}")
    crossed = torch.nonzero(below >= above).flatten().tolist()
    if crossed:
        i = crossed[0]
        raise TaskError(
            f"task tracking.terminate_below[{i}]={below[i].item()} must be below terminate_above[{i}]="
            f"{above[i].item()}; use -inf/+inf to switch a bound off"
        )
    alive_bonus = float(spec.alive_bonus)
    # Elements without a finite bound need no comparison; a task with none never terminates.
    bounded = bool((torch.isfinite(below) | torch.isfinite(above)).any())

    @functools.cache
    def on(device: torch.device) -> tuple[torch.Tensor, ...]:
        """The task's constants on `device`, copied there once rather than at every step (the CPU's are these)."""
        return tuple(t.to(device) for t in (target, weights, action_weights, target_action, below, above))

    def reward(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        target_, weights_, action_weights_, target_action_, _, _ = on(next_obs.device)
        state_cost = (weights_ * (next_obs.float() - target_) ** 2).sum(dim=1)  # [B]
        flat_actions = actions.reshape(obs.shape[0], -1).float()  # [B, action_size]
        action_cost = (action_weights_ * (flat_actions - target_action_) ** 2).sum(dim=1)
        return alive_bonus - state_cost - action_cost

    def terminated(next_obs: torch.Tensor) -> torch.Tensor:
        if not bounded:
            return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)
        *_, below_, above_ = on(next_obs.device)
        return ((next_obs < below_) | (next_obs > above_)).any(dim=1)

    return Task(env_spec.env_id, reward, terminated)


def _values(
    name: str,
    values: tuple[float, ...] | list[float],
    size: int,
    what: str,
    *,
    finite: bool = False,
    non_negative: bool = False,
    default: float | None = None,
) -> torch.Tensor:
    """One tracking field as a float32 tensor [size], checked; empty becomes `default` where allowed."""
    if not values and default is not None:
        return torch.full((size,), default, dtype=torch.float32)
    if len(values) != size:
        optional = " (or none)" if default is not None else ""
        raise TaskError(f"task tracking.{name} has {len(values)} values, and {what}: send {size}{optional}")
    for i, value in enumerate(values):
        if math.isnan(value) or (finite and not math.isfinite(value)):
            raise TaskError(f"task tracking.{name}[{i}]={value} must be {'finite' if finite else 'a number'}")
        if non_negative and value < 0:
            raise TaskError(f"task tracking.{name}[{i}]={value} must not be negative (0 ignores the element)")
    return torch.tensor(values, dtype=torch.float32)
