"""Logged transitions from an .npz file, ready for PlasmaClient.upload.

The file holds arrays `obs` [N, *obs_shape], `actions` ([N] integers for a discrete space, [N, *act_shape]
or [N] floats for a box), `rewards` [N], `next_obs` [N, *obs_shape], `terminated` [N], and optionally
`truncated` [N] and `episode_ids` [N]. The spec is derived from the arrays' shapes; bounds that are not
given are unbounded (-inf..inf), and a scalar bound applies to every element.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plasma.common.v1 import common_pb2

# npz name -> TransitionBatch field, for the arrays the file must hold, then the optional ones.
REQUIRED = {"obs": "observations", "actions": "actions", "rewards": "rewards", "next_obs": "next_observations",
            "terminated": "terminated"}
OPTIONAL = {"truncated": "truncated", "episode_ids": "episode_ids"}


def _bounds(values: Sequence[float] | None, size: int, what: str) -> list[float]:
    if not values:
        return []
    if len(values) == 1:
        return [float(values[0])] * size
    if len(values) != size:
        raise ValueError(f"{what} needs 1 or {size} values, got {len(values)}")
    return [float(v) for v in values]


def _box(shape: tuple[int, ...], low: Sequence[float] | None, high: Sequence[float] | None,
         what: str) -> common_pb2.Space:
    size = int(np.prod(shape))
    return common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=list(shape),
                            low=_bounds(low, size, f"{what} low"), high=_bounds(high, size, f"{what} high"))


def load_npz(
    path: str | Path,
    *,
    env_id: str = "",
    discrete_actions: int = 0,
    obs_low: Sequence[float] | None = None,
    obs_high: Sequence[float] | None = None,
    action_low: Sequence[float] | None = None,
    action_high: Sequence[float] | None = None,
) -> tuple[common_pb2.EnvSpec, dict[str, np.ndarray]]:
    """The spec and the arrays (named as TransitionBatch's fields, in its dtypes) of an .npz of transitions.
    `discrete_actions` > 0 declares a discrete action space of that many choices, otherwise a box."""
    with np.load(path, allow_pickle=False) as npz:
        missing = sorted(set(REQUIRED) - set(npz.files))
        if missing:
            raise ValueError(f"{path} lacks the arrays {', '.join(missing)}; it needs {', '.join(REQUIRED)}")
        raw = {field: npz[name] for name, field in {**REQUIRED, **OPTIONAL}.items() if name in npz.files}
    discrete = discrete_actions > 0
    actions = raw["actions"]
    if discrete:
        actions = actions.astype(np.int64)
    else:
        actions = actions.astype(np.float32)
        actions = actions[:, None] if actions.ndim == 1 else actions
    arrays = {
        "observations": raw["observations"].astype(np.float32),
        "actions": actions,
        "rewards": raw["rewards"].astype(np.float32),
        "next_observations": raw["next_observations"].astype(np.float32),
        "terminated": raw["terminated"].astype(bool),
    }
    if "truncated" in raw:
        arrays["truncated"] = raw["truncated"].astype(bool)
    if "episode_ids" in raw:
        arrays["episode_ids"] = raw["episode_ids"].astype(np.int64)
    obs_shape = tuple(arrays["observations"].shape[1:])
    action_space = (common_pb2.Space(kind=common_pb2.SPACE_KIND_DISCRETE, n=discrete_actions) if discrete
                    else _box(tuple(actions.shape[1:]), action_low, action_high, "action"))
    spec = common_pb2.EnvSpec(env_id=env_id, observation_space=_box(obs_shape, obs_low, obs_high, "observation"),
                              action_space=action_space)
    return spec, arrays
