"""A made-up 3-dimensional linear system with no Gymnasium environment behind it, and upload requests for it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from plasma import tensors
from plasma.common.v1 import common_pb2
from plasma.simulator.v1 import simulator_pb2

# s' = A s + B a + noise: a slowly rotating, slightly damped state driven by one bounded action.
A = np.array([[0.98, 0.10, 0.00], [-0.10, 0.97, 0.05], [0.00, -0.05, 0.99]], dtype=np.float32)
B = np.array([[0.0], [0.1], [0.05]], dtype=np.float32)
NOISE = 0.01
SPEC = common_pb2.EnvSpec(
    observation_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[3]),
    action_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[1], low=[-1.0], high=[1.0]),
)


def rollouts(episodes: int, length: int, seed: int, spread: float = 1.0) -> dict[str, np.ndarray]:
    """`episodes` episodes of `length` steps from start states ~ N(0, spread²), uniform random actions;
    the last step of each is truncated. Arrays as TransitionBatch holds them (obs [N, 3], actions [N, 1])."""
    rng = np.random.default_rng(seed)
    n = episodes * length
    obs = np.empty((n, 3), np.float32)
    next_obs = np.empty((n, 3), np.float32)
    actions = rng.uniform(-1.0, 1.0, size=(n, 1)).astype(np.float32)
    for episode in range(episodes):
        state = rng.normal(0.0, spread, 3).astype(np.float32)
        for t in range(episode * length, (episode + 1) * length):
            obs[t] = state
            state = (A @ state + B @ actions[t] + rng.normal(0.0, NOISE, 3)).astype(np.float32)
            next_obs[t] = state
    truncated = np.zeros(n, dtype=bool)
    truncated[length - 1 :: length] = True
    return {
        "observations": obs, "actions": actions, "rewards": -(obs**2).sum(1).astype(np.float32),
        "next_observations": next_obs, "terminated": np.zeros(n, dtype=bool), "truncated": truncated,
    }


def batch(arrays: dict[str, np.ndarray]) -> simulator_pb2.TransitionBatch:
    return simulator_pb2.TransitionBatch(**{name: tensors.to_proto(array) for name, array in arrays.items()})


def batches(arrays: dict[str, np.ndarray], size: int) -> list[simulator_pb2.TransitionBatch]:
    n = len(arrays["observations"])
    return [batch({k: v[start : start + size] for k, v in arrays.items()}) for start in range(0, n, size)]


def header(
    name: str = "", append_to: str = "", spec: common_pb2.EnvSpec = SPEC
) -> simulator_pb2.UploadTransitionsRequest:
    return simulator_pb2.UploadTransitionsRequest(
        header=simulator_pb2.UploadHeader(env_spec=spec, name=name, append_to_dataset_id=append_to)
    )


def requests(
    name: str, arrays: dict[str, np.ndarray], size: int = 100, append_to: str = ""
) -> Iterator[simulator_pb2.UploadTransitionsRequest]:
    yield header(name, append_to)
    parts = batches(arrays, size)
    for part in parts:
        yield simulator_pb2.UploadTransitionsRequest(batch=part)
    yield commit(len(parts))


def commit(batches_sent: int) -> simulator_pb2.UploadTransitionsRequest:
    return simulator_pb2.UploadTransitionsRequest(commit=simulator_pb2.UploadCommit(batches=batches_sent))
