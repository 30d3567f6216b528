"""Dataset versions: the Dataset message for stored transitions, and appending one version's rows to another.

Shared by CollectTransitions and UploadTransitions, so both describe and extend datasets the same way.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from plasma.mbrl.types import Transitions
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec, Space


def concatenate(first: Transitions, second: Transitions) -> Transitions:
    """`first` then `second`, with the second's episode ids shifted past the first's."""
    offset = int(first.episode_ids.max()) + 1 if len(first) else 0
    shifted = Transitions(**{**vars(second), "episode_ids": second.episode_ids + offset})
    return Transitions(**{k: np.concatenate([getattr(first, k), getattr(shifted, k)]) for k in vars(first)})


def mean_episode_return(data: Transitions) -> float:
    ended = data.terminated | data.truncated
    if not ended.any():
        return 0.0
    returns = [float(data.rewards[data.episode_ids == e].sum()) for e in np.unique(data.episode_ids[ended])]
    return float(np.mean(returns))


def describe(
    dataset_id: str,
    spec: EnvSpec,
    rows: Transitions,
    *,
    name: str,
    origin: str,
    parent_dataset_id: str,
    create_time: Timestamp,
    seed: int = 0,
) -> simulator_pb2.Dataset:
    """The Dataset message of `rows`; the store fills in `version` when it saves it."""
    return simulator_pb2.Dataset(
        dataset_id=dataset_id,
        env_spec=spec.to_proto(),
        num_transitions=len(rows),
        num_episodes=len(np.unique(rows.episode_ids)),
        seed=seed,
        create_time=create_time,
        mean_episode_return=mean_episode_return(rows),
        name=name,
        parent_dataset_id=parent_dataset_id,
        origin=origin,
    )


def _describe_space(space: Space) -> str:
    return f"discrete(n={space.n})" if space.kind == "discrete" else f"box(shape={list(space.shape)})"


def describe_spec(spec: EnvSpec) -> str:
    """A short text for error messages, e.g. "CartPole-v1: box(shape=[4]) -> discrete(n=2)"."""
    source = spec.env_id or "logged data"
    return f"{source}: {_describe_space(spec.observation)} -> {_describe_space(spec.action)}"
