"""Task specs for the demos, and the matching reward on the real environment (numpy).

One world model serves many tasks: a TaskSpec tells the simulator (and the trainer) what to optimize.
`real_reward` / `left_bounds` apply a tracking spec to real transitions exactly as the simulator applies
it to imagined ones, so that a policy trained for a task is judged by the same measure in the real world.

Command-line syntax (`parse_task`), e.g. `plasma evaluate --task cartpole-x=1`:
    environment        the environment's own reward and termination (CartPole-v1, Pendulum-v1)
    learned            the world model's learned reward and termination heads (training only)
    cartpole-x=X       CartPole-v1: keep the pole up with the cart at x = X (|X| < 2.4)
    pendulum-hold=DEG  Pendulum-v1: hold the pendulum at theta = DEG degrees (Gymnasium's theta, 0 upright)
    track:obs[I]=V[@W][,obs[J]=U[@W]...]
                       any environment: hold observation element I at V (cost W * (obs[I] - V)^2, W 1 unless
                       given), J at U, ...; no alive bonus and no termination bounds
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plasma.simulator.v1 import task_pb2

# Gymnasium CartPole-v1's termination bounds (cartpole.py): the cart's position and the pole's angle.
CARTPOLE_X_LIMIT = 2.4
CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360


def cartpole_balance_at(x: float) -> task_pb2.TaskSpec:
    """CartPole-v1 (obs = x, x_dot, theta, theta_dot): stay alive with the cart at `x` and the pole upright.

    The position weight keeps the cost below the alive bonus of 1 everywhere inside CartPole's own bounds,
    so that staying alive always pays more than falling over: a planner never prefers to end an episode.
    Measured with bench/task_steering.py (CEM planner acting in the real CartPole, 3 seeds x 6 episodes):
    every episode ends up on the target's side, but past it (x = 1.7-1.8 for a target of 1); a 3x larger
    weight got nearer the target on average but sent some episodes the wrong way, and 0.5 toppled the pole
    within 75 steps. The angle's weight is small: CartPole's bound already keeps the pole up, and with a
    weight of 1 the planner no longer steered the cart at all.
    """
    if not abs(x) < CARTPOLE_X_LIMIT:
        raise ValueError(f"cartpole target x={x} must lie inside CartPole's bounds (-2.4, 2.4)")
    # (x - target)^2 is largest at the bound farther from the target: 0.8 of the bonus there.
    x_weight = 0.8 / (CARTPOLE_X_LIMIT + abs(x)) ** 2
    theta_weight = 0.1
    return task_pb2.TaskSpec(
        name=f"cartpole-x={x:g}",
        tracking=task_pb2.TrackingObjective(
            target_observation=[x, 0.0, 0.0, 0.0],
            state_weights=[x_weight, 0.0, theta_weight, 0.0],
            alive_bonus=1.0,
            terminate_below=[-CARTPOLE_X_LIMIT, -math.inf, -CARTPOLE_THETA_LIMIT, -math.inf],
            terminate_above=[CARTPOLE_X_LIMIT, math.inf, CARTPOLE_THETA_LIMIT, math.inf],
        ),
    )


def pendulum_hold_at(angle_deg: float) -> task_pb2.TaskSpec:
    """Pendulum-v1 (obs = cos theta, sin theta, theta_dot; theta 0 is upright): hold theta at `angle_deg`.

    (cos - cos a)^2 + (sin - sin a)^2 = 2 - 2 cos(theta - a), about (theta - a)^2 near the target, like
    Pendulum's own theta^2 cost; a small cost on speed and Pendulum's own 0.001 on torque. Gravity pulls
    with 15 sin(theta) against at most 6 from the torque, so only |angle_deg| <= 23 or so can be held still;
    beyond that a policy can only swing about the target. Measured (CEM planner acting in the real
    Pendulum, world model fitted on 2,000 random steps, 4 episodes): the environment's objective held
    theta at -0.5 degrees, pendulum-hold=20 at 7-9 degrees and pendulum-hold=-20 at -9 to -11 (one of the
    four swung): steered the right way, short of the target.
    """
    angle = math.radians(angle_deg)
    return task_pb2.TaskSpec(
        name=f"pendulum-hold={angle_deg:g}",
        tracking=task_pb2.TrackingObjective(
            target_observation=[math.cos(angle), math.sin(angle), 0.0],
            state_weights=[1.0, 1.0, 0.1],
            action_weights=[0.001],
        ),
    )


TASK_SYNTAX = "environment, learned, cartpole-x=X, pendulum-hold=DEG or track:obs[I]=V[@W][,obs[J]=U[@W]...]"
TRACK_PREFIX = "track:"
_TARGET = re.compile(r"obs\[(\d+)\]=([^@]+)(?:@(.+))?")


@dataclass(frozen=True)
class Target:
    """Hold observation element `index` at `value`, at a cost of `weight` * (obs[index] - value)^2 per step."""

    index: int
    value: float
    weight: float = 1.0


def track_observations(targets: tuple[Target, ...], obs_size: int) -> task_pb2.TaskSpec:
    """A tracking task for observations of `obs_size` elements: each target's element held at its value, the
    other elements free; no alive bonus and no termination bounds (paths run their whole horizon)."""
    target_observation, weights = [0.0] * obs_size, [0.0] * obs_size
    for target in targets:
        if not 0 <= target.index < obs_size:
            raise ValueError(f"tracking target obs[{target.index}] is outside the observation, which has {obs_size} "
                             f"elements: use obs[0] to obs[{obs_size - 1}]")
        target_observation[target.index], weights[target.index] = target.value, target.weight
    name = "track-" + "+".join(f"obs{t.index}={t.value:g}" + (f"w{t.weight:g}" if t.weight != 1.0 else "")
                               for t in targets)
    return task_pb2.TaskSpec(
        name=name[:128],  # a task's name is a Plasma name (plasma.ids): at most 128 characters
        tracking=task_pb2.TrackingObjective(target_observation=target_observation, state_weights=weights),
    )


def parse_targets(text: str) -> tuple[Target, ...]:
    """`obs[1]=0.5,obs[0]=0@0.1` -> its targets; ValueError naming the part that is wrong."""
    targets: list[Target] = []
    for part in (p.strip() for p in text.split(",")):
        match = _TARGET.fullmatch(part)
        if match is None:
            raise ValueError(f"tracking target {part!r} is not obs[I]=V or obs[I]=V@W (I an index from 0, V the "
                             f"target value, W its weight)")
        value, weight = _number(match[2], part), _number(match[3], part) if match[3] else 1.0
        if not weight > 0:
            raise ValueError(f"tracking target {part!r}: the weight must be positive")
        if any(t.index == int(match[1]) for t in targets):
            raise ValueError(f"tracking targets name obs[{match[1]}] twice")
        targets.append(Target(int(match[1]), value, weight))
    return tuple(targets)


def check_task_syntax(text: str) -> str:
    """`text` if it is a task in the command-line syntax (before the observation's size is known)."""
    _builder(text)
    return text


def parse_task(text: str, obs_size: int | None = None) -> task_pb2.TaskSpec:
    """A task from the command-line syntax in this module's docstring, checked against observations of
    `obs_size` elements; `track:` targets need it (ValueError without it)."""
    spec = _builder(text)(obs_size)
    if obs_size is not None and spec.WhichOneof("objective") == "tracking":
        scores_real_steps(spec, obs_size)  # a task made for another environment: the same error as evaluating it
    return spec


def _builder(text: str) -> Callable[[int | None], task_pb2.TaskSpec]:
    """The task `text` names, as a function of the observation's size; ValueError for a bad spec."""
    if text.startswith(TRACK_PREFIX):
        targets = parse_targets(text.removeprefix(TRACK_PREFIX))

        def tracking(obs_size: int | None) -> task_pb2.TaskSpec:
            if obs_size is None:
                raise ValueError(f"task {text!r} needs the observation's size: pass the environment's")
            return track_observations(targets, obs_size)

        return tracking
    name, _, value = text.partition("=")
    if name in ("environment", "learned") and not value:
        spec = task_pb2.TaskSpec(name=name)
        getattr(spec, name).SetInParent()
        return lambda _: spec
    builders = {"cartpole-x": cartpole_balance_at, "pendulum-hold": pendulum_hold_at}
    if name not in builders or not value:
        raise ValueError(f"unknown task {text!r}: use {TASK_SYNTAX}")
    built = builders[name](_number(value, text))
    return lambda _: built


def _number(text: str, where: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"task {where!r}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"task {where!r}: {text!r} must be finite")
    return number


def real_reward(
    task: task_pb2.TaskSpec, obs: np.ndarray, action: np.ndarray | int, next_obs: np.ndarray
) -> np.ndarray:
    """A tracking task's reward of real transitions: obs, next_obs [..., obs_dim]; action [...] (discrete,
    charged as its index) or [..., act_dim] -> reward [...] (a float64 array, 0-d for one transition)."""
    tracking = _tracking(task)
    next_obs = np.asarray(next_obs, dtype=np.float64)
    batch_shape = next_obs.shape[:-1]
    actions = np.asarray(action, dtype=np.float64).reshape(*batch_shape, -1)
    state_cost = np.sum(np.asarray(tracking.state_weights) * (next_obs - tracking.target_observation) ** 2, axis=-1)
    action_weights = np.asarray(tracking.action_weights or [0.0] * actions.shape[-1])
    target_action = np.asarray(tracking.target_action or [0.0] * actions.shape[-1])
    action_cost = np.sum(action_weights * (actions - target_action) ** 2, axis=-1)
    return tracking.alive_bonus - state_cost - action_cost


def left_bounds(task: task_pb2.TaskSpec, next_obs: np.ndarray) -> np.ndarray:
    """Whether next_obs [..., obs_dim] left a tracking task's [terminate_below, terminate_above] -> [...]."""
    tracking = _tracking(task)
    next_obs = np.asarray(next_obs, dtype=np.float64)
    below = np.asarray(tracking.terminate_below or [-np.inf] * next_obs.shape[-1])
    above = np.asarray(tracking.terminate_above or [np.inf] * next_obs.shape[-1])
    return np.any((next_obs < below) | (next_obs > above), axis=-1)


def scores_real_steps(task: task_pb2.TaskSpec | None, obs_size: int) -> bool:
    """Whether real episodes are scored with `task` (a tracking task for observations of `obs_size`)
    rather than with the environment's own reward (no task, or the environment objective)."""
    if task is None or task.WhichOneof("objective") == "environment":
        return False
    size = len(_tracking(task).target_observation)
    if size != obs_size:
        raise ValueError(f"task {task.name or 'tracking'!r} targets {size} observation elements, and this "
                         f"environment has {obs_size}: pick a task made for it")
    return True


def _tracking(task: task_pb2.TaskSpec) -> task_pb2.TrackingObjective:
    if task.WhichOneof("objective") != "tracking":
        raise ValueError(
            f"only a tracking task has a reward Plasma can compute on real transitions, not "
            f"{task.WhichOneof('objective') or 'an empty task'}; evaluate with the environment's reward instead"
        )
    return task.tracking
