"""Evaluation on the real environment, acting through the edge runtime over gRPC.

Evaluation episodes use their own seeds (from `seed`), separate from any collection seed, and
nothing they observe is sent back for learning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from plasma.sdk import tasks
from plasma.simulator.v1 import task_pb2


@dataclass(frozen=True)
class Evaluation:
    returns: tuple[float, ...]
    # Client-observed round-trip latency of each action request, in milliseconds.
    latencies_ms: tuple[float, ...]
    # Every episode's rewards, step by step: returns over a shorter horizon compare with imagined paths.
    rewards: tuple[tuple[float, ...], ...] = ()

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def mean_return_within(self, steps: int) -> float:
        """Mean return over each episode's first `steps` steps (the whole episode where it is shorter)."""
        return float(np.mean([sum(episode[:steps]) for episode in self.rewards]))

    def latency_percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def observation_size(space: gym.Space[Any]) -> int:
    """The number of elements in one observation of `space` (1 for a Discrete space)."""
    if space.shape is None:
        raise ValueError(f"observation space {space} has no shape")
    return int(np.prod(space.shape))


def run_episodes(
    env_id: str,
    episodes: int,
    seed: int,
    choose: Callable[[np.ndarray], np.ndarray | int],
    task: task_pb2.TaskSpec | None = None,
) -> Evaluation:
    """Plays `episodes` real episodes, timing every call of `choose(observation) -> action`.

    With a tracking `task`, returns are sums of the task's reward (plasma.sdk.tasks.real_reward) and an
    episode also ends once the task's bounds are left; otherwise they are the environment's own.
    """
    env = gym.make(env_id)
    rewards: list[tuple[float, ...]] = []
    latencies: list[float] = []
    try:
        scoring = task if tasks.scores_real_steps(task, observation_size(env.observation_space)) else None
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            episode_rewards: list[float] = []
            done = False
            while not done:
                started = time.perf_counter()
                action = choose(np.asarray(obs, dtype=np.float32))
                latencies.append((time.perf_counter() - started) * 1e3)
                previous, stepped = obs, env_action(env, action)
                obs, reward, terminated, truncated, _ = env.step(stepped)
                if scoring is not None:
                    reward = float(tasks.real_reward(scoring, previous, stepped, obs))
                    terminated = terminated or bool(tasks.left_bounds(scoring, obs))
                episode_rewards.append(float(reward))
                done = terminated or truncated
            rewards.append(tuple(episode_rewards))
    finally:
        env.close()
    return Evaluation(tuple(sum(episode) for episode in rewards), tuple(latencies), tuple(rewards))


def random_baseline(env_id: str, episodes: int, seed: int) -> Evaluation:
    space = gym.make(env_id).action_space
    space.seed(seed)
    return run_episodes(env_id, episodes, seed, lambda _obs: space.sample())


def env_action(env: gym.Env, action: np.ndarray | int) -> np.ndarray | int:
    """A policy's action as `env.step` takes it: an int for a discrete space, float32 of the space's shape."""
    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(()))
    return np.asarray(action, dtype=np.float32).reshape(env.action_space.shape)
