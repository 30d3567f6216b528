"""Real transitions from a Gymnasium environment: the only place Plasma touches the real world."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.types import MlpWeights, Transitions
from plasma.spaces import EnvSpec, Space

# progress(steps_done, steps_total, episodes_done)
Progress = Callable[[int, int, int], None]


class UnknownEnvironment(ValueError):
    """The id names no registered Gymnasium environment."""


class EnvironmentUnavailable(RuntimeError):
    """The id is registered, but the environment cannot be built on this machine: a dependency is missing."""


def _space_spec(space: gym.Space[Any], what: str) -> Space:
    if isinstance(space, spaces.Discrete):
        return Space(kind="discrete", n=int(space.n))
    if isinstance(space, spaces.Box):
        return Space(
            kind="box",
            shape=tuple(int(d) for d in space.shape),
            low=tuple(float(v) for v in space.low.ravel()),
            high=tuple(float(v) for v in space.high.ravel()),
        )
    raise ValueError(f"{what} space {space} is not supported; Plasma handles Discrete and Box spaces")


def env_spec_of(env: gym.Env) -> EnvSpec:
    observation = _space_spec(env.observation_space, "observation")
    if observation.kind != "box":
        raise ValueError(f"observation space {env.observation_space} is not supported; it must be a Box")
    env_id = env.spec.id if env.spec is not None else ""
    return EnvSpec(env_id=env_id, observation=observation, action=_space_spec(env.action_space, "action"))


def make_env(env_id: str) -> gym.Env:
    """gym.make, with an error that suggests real ids when `env_id` is not registered, and EnvironmentUnavailable
    (saying what is missing) when it is registered but needs a package that is not installed (Box2D, MuJoCo, jax)."""
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "try e.g. CartPole-v1 or Pendulum-v1"
        raise UnknownEnvironment(f"unknown environment {env_id!r}: {hint}")
    try:
        return gym.make(env_id)
    except gym.error.DependencyNotInstalled as exc:  # Box2D, MuJoCo: the message says what to install
        raise EnvironmentUnavailable(f"environment {env_id!r} cannot be built here: {exc}") from exc
    except ImportError as exc:  # jax for phys2d/* and tabular/*; environments moved out of gymnasium
        missing = f"the Python module {exc.name!r} is not installed" if exc.name else str(exc)
        raise EnvironmentUnavailable(f"environment {env_id!r} cannot be built here: {missing}") from exc


def collect(
    env_id: str,
    num_steps: int,
    seed: int,
    policy: MlpWeights | None = None,
    epsilon: float = 0.0,
    progress: Progress | None = None,
) -> tuple[EnvSpec, Transitions]:
    """Steps the environment `num_steps` times with random actions (policy None) or the MLP policy,
    which takes a random action instead with probability `epsilon`. The same seed gives the same data.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if seed < 0:
        raise ValueError(f"seed must not be negative, got {seed}")
    env = make_env(env_id)
    try:
        spec = env_spec_of(env)
        actor = MlpPolicy(policy, spec) if policy is not None else None
        return spec, _run(env, spec, num_steps, seed, actor, epsilon, progress)
    finally:
        env.close()


def _run(
    env: gym.Env,
    spec: EnvSpec,
    num_steps: int,
    seed: int,
    actor: MlpPolicy | None,
    epsilon: float,
    progress: Progress | None,
) -> Transitions:
    discrete = spec.action.kind == "discrete"
    # Discrete spaces may start at a nonzero index; datasets store actions counted from 0.
    action_offset = int(env.action_space.start) if isinstance(env.action_space, spaces.Discrete) else 0
    env.action_space.seed(seed)
    explore = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")}
    episode_ids = np.zeros(num_steps, dtype=np.int64)
    report_every = max(1, num_steps // 100)
    obs, _ = env.reset(seed=seed)
    episode = 0
    for step in range(num_steps):
        if actor is None or explore.random() < epsilon:
            action = env.action_space.sample()
            action = int(action) - action_offset if discrete else action
        else:
            action = actor.act_numpy(np.asarray(obs)[None])[0]
        env_action = int(action) + action_offset if discrete else np.asarray(action, dtype=np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(env_action)
        for key, value in zip(rows, (obs, action, reward, next_obs, terminated, truncated), strict=True):
            rows[key].append(value)
        episode_ids[step] = episode
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset()
        else:
            obs = next_obs
        if progress is not None and ((step + 1) % report_every == 0 or step + 1 == num_steps):
            progress(step + 1, num_steps, episode)
    obs_dim = spec.observation.flat_dim
    return Transitions(
        obs=np.asarray(rows["obs"], dtype=np.float32).reshape(num_steps, obs_dim),
        actions=(np.asarray(rows["actions"], dtype=np.int64) if discrete
                 else np.asarray(rows["actions"], dtype=np.float32).reshape(num_steps, -1)),
        rewards=np.asarray(rows["rewards"], dtype=np.float32),
        next_obs=np.asarray(rows["next_obs"], dtype=np.float32).reshape(num_steps, obs_dim),
        terminated=np.asarray(rows["terminated"], dtype=bool),
        truncated=np.asarray(rows["truncated"], dtype=bool),
        episode_ids=episode_ids,
    )
