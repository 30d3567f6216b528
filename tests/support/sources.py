"""A phantom source whose paths are random states labelled by a fixed rule: an algorithm trained on it should
learn the rule, which makes what it learned easy to check without a world model."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from plasma.mbrl.algorithms.base import PolicyIO
from plasma.mbrl.types import MlpWeights, PhantomPath


def forward(weights: MlpWeights, obs: np.ndarray) -> np.ndarray:
    x = (obs - weights.obs_mean) / weights.obs_std
    for i, (w, b) in enumerate(zip(weights.weights, weights.biases, strict=True)):
        x = x @ w.T + b
        if i < len(weights.weights) - 1:
            x = np.tanh(x)
    return x


class RuleSource:
    """Phantom paths over random states, labelled by a fixed rule instead of a planner: no simulator."""

    def __init__(self, io: PolicyIO, rule: Callable[[np.ndarray], np.ndarray]) -> None:
        self.io, self.rule, self.calls = io, rule, []

    def _act(self, policy: object, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if isinstance(policy, MlpWeights):
            raw = forward(policy, obs)
            if self.io.action_kind == "discrete":
                return raw.argmax(-1)
            low, high = np.array(self.io.action_low), np.array(self.io.action_high)
            return (low + (np.tanh(raw) + 1) / 2 * (high - low)).astype(np.float32)
        return self.rule(obs)  # the planner

    def simulate(self, *, policy, num_paths, horizon, seed, start_states, label_with_planner,
                 reward_source) -> Iterator[PhantomPath]:
        self.calls.append(dict(policy=policy, seed=seed, label=label_with_planner, reward_source=reward_source,
                               start_states=start_states))
        rng = np.random.default_rng(seed)
        for _ in range(num_paths):
            obs = rng.normal(size=(horizon + 1, self.io.obs_dim)).astype(np.float32) * 3 + 1
            actions = self._act(policy, obs[:-1], rng)
            expert = self.rule(obs[:-1])
            agree = actions == expert if actions.ndim == 1 else np.abs(actions - expert).max(-1) < 0.1
            yield PhantomPath(obs, actions, agree.astype(np.float32), np.zeros(horizon, bool),
                              np.zeros(horizon, np.float32), expert)


def sign_rule(obs: np.ndarray) -> np.ndarray:
    return ((obs[:, 0] - 1) > 0).astype(np.int64)
