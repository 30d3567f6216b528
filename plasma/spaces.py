"""Observation and action spaces, and the environment spec that pairs them: the one definition every component
uses (packets, the library, the services), with its JSON form (packet manifests, saved world models) and its
protobuf form (plasma.common.v1.Space / EnvSpec). numpy only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from plasma.common.v1 import common_pb2


class SpaceError(ValueError):
    """A space that cannot be one; the message names where it came from and what is wrong."""


@dataclass(frozen=True)
class Space:
    """An observation or action space: "discrete" (n choices) or "box" (shape, per-element bounds, flattened in
    C order; ±inf where unbounded)."""

    kind: str
    shape: tuple[int, ...] = ()
    n: int = 0
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def flat_dim(self) -> int:
        """Width of one element once flattened: n for discrete (one-hot), prod(shape) for a box."""
        return self.n if self.kind == "discrete" else int(np.prod(self.shape, dtype=np.int64))

    def check(self, where: str) -> None:
        if self.kind not in ("discrete", "box"):
            raise SpaceError(f"{where}: kind must be 'discrete' or 'box', got {self.kind!r}")
        if self.kind == "discrete" and self.n < 1:
            raise SpaceError(f"{where}: a discrete space needs n >= 1, got {self.n}")
        if self.kind == "box":
            if not self.shape or any(d < 1 for d in self.shape):
                raise SpaceError(f"{where}: a box needs a non-empty shape of positive sizes, got {list(self.shape)}")
            if not len(self.low) == len(self.high) == self.flat_dim:
                raise SpaceError(f"{where}: low and high need {self.flat_dim} entries each, "
                                 f"got {len(self.low)} and {len(self.high)}")

    def to_json(self) -> dict[str, Any]:
        if self.kind == "discrete":
            return {"kind": "discrete", "n": self.n}
        # JSON has no infinity: unbounded elements are written as the strings "inf" / "-inf".
        return {"kind": "box", "shape": list(self.shape), "low": [_bound_out(v) for v in self.low],
                "high": [_bound_out(v) for v in self.high]}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Space:
        """Reads `to_json`'s form (and, for saved world models, every field with bare floats), checked."""
        if not isinstance(raw, dict) or raw.get("kind") not in ("discrete", "box"):
            raise SpaceError(f"{where}: expected an object with kind 'discrete' or 'box', got {raw!r}")
        try:
            if raw["kind"] == "discrete":
                space = cls(kind="discrete", n=int(raw["n"]))
            else:
                space = cls(kind="box", shape=tuple(int(d) for d in raw["shape"]),
                            low=tuple(_bound_in(v) for v in raw["low"]),
                            high=tuple(_bound_in(v) for v in raw["high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SpaceError(f"{where} is malformed: {exc!r}") from exc
        space.check(where)
        return space

    def to_proto(self) -> common_pb2.Space:
        if self.kind == "discrete":
            return common_pb2.Space(kind=common_pb2.SPACE_KIND_DISCRETE, n=self.n)
        return common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=list(self.shape), low=list(self.low),
                                high=list(self.high))

    @classmethod
    def from_proto(cls, message: common_pb2.Space) -> Space:
        """Decodes without checking (a message may describe a space still to be validated, e.g. an upload)."""
        if message.kind == common_pb2.SPACE_KIND_DISCRETE:
            return cls(kind="discrete", n=int(message.n))
        return cls(kind="box", shape=tuple(int(d) for d in message.shape),
                   low=tuple(float(v) for v in message.low), high=tuple(float(v) for v in message.high))


@dataclass(frozen=True)
class EnvSpec:
    """What a system observes and how it is acted on; `env_id` is the Gymnasium id, "" for logged data."""

    env_id: str
    observation: Space
    action: Space

    def to_json(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "observation": self.observation.to_json(), "action": self.action.to_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EnvSpec:
        return cls(env_id=str(raw.get("env_id", "")), observation=Space.from_json(raw["observation"], "observation"),
                   action=Space.from_json(raw["action"], "action"))

    def to_proto(self) -> common_pb2.EnvSpec:
        return common_pb2.EnvSpec(env_id=self.env_id, observation_space=self.observation.to_proto(),
                                  action_space=self.action.to_proto())

    @classmethod
    def from_proto(cls, message: common_pb2.EnvSpec) -> EnvSpec:
        return cls(env_id=message.env_id, observation=Space.from_proto(message.observation_space),
                   action=Space.from_proto(message.action_space))


def _bound_out(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _bound_in(value: float | str) -> float:
    number = float(value)
    if math.isnan(number):
        raise ValueError("a bound cannot be NaN")
    return number
