"""Real Gymnasium rollouts from a given start state, to hold phantom paths and forecasts against.

A forecast starts from one state; the real environment is put in that same state after reset (for
environments whose `unwrapped.state` is the observation, such as CartPole) and then driven either by a
fixed action sequence (a phantom path's actions, replayed open-loop) or by an MLP policy (closed loop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np

from plasma import tensors
from plasma.sdk.evaluate import env_action
from plasma.simulator.v1 import simulator_pb2

_ACTIVATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    simulator_pb2.ACTIVATION_TANH: np.tanh,
    simulator_pb2.ACTIVATION_RELU: lambda x: np.maximum(x, 0.0),
    simulator_pb2.ACTIVATION_SILU: lambda x: x / (1.0 + np.exp(-x)),
}


@dataclass(frozen=True)
class RealPath:
    """States [k + 1, obs_dim] a real environment went through, and whether it terminated at the last."""

    states: np.ndarray
    terminated: bool


def start_state(env_id: str, seed: int) -> np.ndarray:
    """The environment's first observation after reset(seed): a start state the real env can reproduce."""
    env = gym.make(env_id)
    try:
        observation, _ = env.reset(seed=seed)
    finally:
        env.close()
    return np.asarray(observation, dtype=np.float32)


def _place(env: gym.Env, start: np.ndarray, seed: int) -> np.ndarray:
    """Resets `env` and puts it in `start`; raises ValueError where the environment cannot be placed."""
    observation, _ = env.reset(seed=seed)
    if np.allclose(observation, start, atol=1e-6):
        return np.asarray(observation, dtype=np.float32)
    state = getattr(env.unwrapped, "state", None)
    if state is None or np.shape(state) != np.shape(start):
        raise ValueError(
            f"{env.spec.id if env.spec else 'this environment'} cannot be put into an arbitrary start state; "
            "start from its reset state (pass the same seed, no explicit start)"
        )
    # Gymnasium's Env does not declare `state`: the classic-control environments that have one (probed above).
    env.unwrapped.state = np.array(start, dtype=np.asarray(state).dtype)  # type: ignore[attr-defined]
    return np.asarray(start, dtype=np.float32)


def replay(env_id: str, start: np.ndarray, actions: np.ndarray, seed: int = 0) -> RealPath:
    """The real path from `start` under `actions` ([T] or [T, act_dim]), open loop, until the actions run
    out or the episode ends (k <= T steps)."""
    env = gym.make(env_id)
    try:
        states = [_place(env, start, seed)]
        terminated = False
        for action in actions:
            observation, _, terminated, truncated, _ = env.step(env_action(env, action))
            states.append(np.asarray(observation, dtype=np.float32))
            if terminated or truncated:
                break
    finally:
        env.close()
    return RealPath(np.stack(states), bool(terminated))


def run_policy(
    env_id: str, start: np.ndarray, policy: simulator_pb2.MlpPolicy, horizon: int, seed: int = 0
) -> RealPath:
    """The real path from `start` with the MLP policy choosing every action, for at most `horizon` steps."""
    env = gym.make(env_id)
    try:
        act = mlp_actor(policy, env.action_space)
        observation = _place(env, start, seed)
        states = [observation]
        terminated = False
        for _ in range(horizon):
            observation, _, terminated, truncated, _ = env.step(env_action(env, act(observation)))
            observation = np.asarray(observation, dtype=np.float32)
            states.append(observation)
            if terminated or truncated:
                break
    finally:
        env.close()
    return RealPath(np.stack(states), bool(terminated))


def mlp_actor(policy: simulator_pb2.MlpPolicy, space: gym.Space[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """obs [obs_dim] -> action, as the simulator's MlpPolicy computes it: argmax of the logits for a
    discrete space, tanh squashed into the bounds for a box."""
    weights = [tensors.from_proto(w, "weight") for w in policy.weights]
    biases = [tensors.from_proto(b, "bias") for b in policy.biases]
    if policy.activation not in _ACTIVATIONS:
        raise ValueError(f"policy activation {policy.activation} is not one of tanh, relu, silu")
    activation = _ACTIVATIONS[policy.activation]
    mean = tensors.from_proto(policy.obs_mean, "obs_mean")
    std = tensors.from_proto(policy.obs_std, "obs_std")

    def act(observation: np.ndarray) -> np.ndarray:
        x = (np.asarray(observation, dtype=np.float32).reshape(-1) - mean) / std
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = w @ x + b
            if i < len(weights) - 1:
                x = activation(x)
        if isinstance(space, gym.spaces.Discrete):
            return np.asarray(int(np.argmax(x)))
        box = cast(gym.spaces.Box, space)  # the only other kind of action space Plasma trains for
        low, high = box.low.reshape(-1), box.high.reshape(-1)
        return (low + (np.tanh(x) + 1.0) * 0.5 * (high - low)).astype(np.float32)

    return act
