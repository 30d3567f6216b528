"""UploadTransitions: logged transitions of any box-observation system, streamed in batches.

The first request declares the spec (and a name, or a dataset to append to); every batch after it is
checked against that spec, written to an fsync'd file in the store's staging area, and only then
acknowledged, so an acknowledged batch survives a crash of the stream. An explicit UploadCommit, sent
last, turns the staged batches into one new dataset version in a single atomic write. A stream that ends
without it (failed, cancelled, or a client that just stops) leaves no dataset: gRPC ends a server's request
iterator the same way for a half-close and for some cancellations, so the end of the stream alone cannot
say that the client meant to store what it sent. The staging directory is removed (and any a crash left
behind is removed when the store opens).

Bounds: observations and box actions must lie inside the declared box (compared in float32, as
Gymnasium's `Box.contains` does). A box given without bounds is unbounded (-inf..inf), so data with no
known bounds is declared by leaving `low`/`high` empty rather than made up.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import numpy as np

from plasma import files, ids, tensors
from plasma import log as plog
from plasma.common.v1 import common_pb2
from plasma.mbrl.types import Transitions
from plasma.server import grpc_server
from plasma.server.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec, Space
from services.simulator import datasets
from services.simulator.store import SimulatorStore, new_id

log = plog.get(__name__)

# One upload stream may hold at most this many transitions (a bound on staging disk and commit memory).
MAX_UPLOAD_TRANSITIONS = 10_000_000
_BATCH_FILE = "batch-{:06d}.npz"


def _checked_box(space: Space, what: str) -> Space:
    """A box with a non-empty shape and one (low <= high) bound pair per element; empty bounds = unbounded."""
    if not space.shape or any(d < 1 for d in space.shape):
        raise InvalidArgument(f"header env_spec.{what}.shape={list(space.shape)} must list at least one "
                              f"dimension, each at least 1, e.g. [3]")
    size = space.flat_dim
    low, high = space.low or (-np.inf,) * size, space.high or (np.inf,) * size
    if len(low) != size or len(high) != size:
        raise InvalidArgument(f"header env_spec.{what}: low and high need {size} values each (one per element of "
                              f"shape {list(space.shape)}), got {len(low)} and {len(high)}; leave both empty "
                              f"for an unbounded box")
    if any(np.isnan(v) for v in (*low, *high)) or any(lo > hi for lo, hi in zip(low, high, strict=True)):
        raise InvalidArgument(f"header env_spec.{what}: every low must be <= its high and neither NaN")
    # Bounds are float32, like the data they bound (and like a Gymnasium Box's): 4.8 and the float32 4.8
    # that CartPole-v1 declares are then the same bound, so such an upload can extend a collected dataset.
    return replace(space, low=tuple(float(np.float32(v)) for v in low), high=tuple(float(np.float32(v)) for v in high))


def checked_spec(message: simulator_pb2.UploadHeader) -> EnvSpec:
    """The header's spec, validated: a box observation space and a box or discrete action space."""
    if not message.HasField("env_spec"):
        raise InvalidArgument("header env_spec is required: the observation space (a box) and the action space")
    spec = EnvSpec.from_proto(message.env_spec)
    if message.env_spec.observation_space.kind != common_pb2.SPACE_KIND_BOX:
        raise InvalidArgument("header env_spec.observation_space must be a box (kind SPACE_KIND_BOX) with a shape")
    observation = _checked_box(spec.observation, "observation_space")
    act_kind = message.env_spec.action_space.kind
    if act_kind == common_pb2.SPACE_KIND_DISCRETE:
        if spec.action.n < 1:
            raise InvalidArgument(f"header env_spec.action_space.n={spec.action.n} must be at least 1 "
                                  f"for a discrete action space")
        action = spec.action
    elif act_kind == common_pb2.SPACE_KIND_BOX:
        action = _checked_box(spec.action, "action_space")
    else:
        raise InvalidArgument("header env_spec.action_space.kind must be SPACE_KIND_DISCRETE (with n) or "
                              "SPACE_KIND_BOX (with a shape)")
    return EnvSpec(env_id=spec.env_id, observation=observation, action=action)


@dataclass
class _Episodes:
    """Episode bookkeeping across batches: ids from the client, or counted from the done flags."""

    given: bool | None = None  # whether the batches carry episode_ids; fixed by the first batch
    current: int | None = None  # episode of the last row so far
    current_ended: bool = False  # whether that row was terminated or truncated
    finished: set[int] = field(default_factory=set)
    next_counted: int = 0  # the id the next counted episode gets

    def assign(self, index: int, ids: np.ndarray | None, ended: np.ndarray) -> np.ndarray:
        """Episode ids [N] for one batch's rows; checks that each episode's rows are contiguous."""
        if self.given is None:
            self.given = ids is not None
        if self.given != (ids is not None):
            have = "has" if ids is not None else "lacks"
            raise InvalidArgument(f"batch {index} {have} episode_ids, unlike batch 0; send episode_ids in every "
                                  f"batch or in none")
        if ids is None:
            # A row starts a new episode when the row before it ended (the first row of all starts one);
            # the first row of a batch continues the previous batch's last episode otherwise.
            starts = np.concatenate([[self.current is None or self.current_ended], ended[:-1]])
            counted = (self.next_counted - 1 + np.cumsum(starts)).astype(np.int64)
            self.next_counted = int(counted[-1]) + 1
            self.current, self.current_ended = int(counted[-1]), bool(ended[-1])
            return counted
        for row, episode in enumerate(ids.tolist()):
            if episode != self.current:
                if episode in self.finished:
                    raise InvalidArgument(f"batch {index} row {row}: episode_ids {episode} appears again after "
                                          f"other episodes; send each episode's rows together and in order")
                if self.current is not None:
                    self.finished.add(self.current)
                self.current = episode
            elif self.current_ended:
                raise InvalidArgument(f"batch {index} row {row}: episode {episode} continues after a row marked "
                                      f"terminated or truncated; start a new episode id after it ends")
            self.current_ended = bool(ended[row])
        return ids


def _tensor(batch: simulator_pb2.TransitionBatch, name: str, index: int, dtype: str) -> np.ndarray:
    if not batch.HasField(name):
        raise InvalidArgument(f"batch {index}: {name} is required")
    array = tensors.from_proto(getattr(batch, name), f"batch {index} {name}")
    if array.dtype != np.dtype(dtype):
        raise InvalidArgument(f"batch {index} {name}: dtype must be {dtype}, got {array.dtype}")
    return array


def _check_box_values(values: np.ndarray, space: Space, index: int, name: str) -> None:
    """values [N, *shape]: finite and inside the box's bounds, compared in float32."""
    flat = values.reshape(len(values), -1)
    bad_rows = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if len(bad_rows):
        raise InvalidArgument(f"batch {index} {name}: row {bad_rows[0]} holds NaN or inf; every value must be finite")
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    outside = (flat < low) | (flat > high)
    if outside.any():
        row, element = np.argwhere(outside)[0]
        raise InvalidArgument(
            f"batch {index} {name}: row {row} element {element} = {flat[row, element]:g} lies outside the declared "
            f"bounds [{low[element]:g}, {high[element]:g}]; fix the data or declare wider bounds in the header"
        )


def decode_batch(
    batch: simulator_pb2.TransitionBatch, spec: EnvSpec, index: int, episodes: _Episodes
) -> Transitions:
    """One batch as flat `Transitions` rows, after checking every field against `spec`."""
    obs_shape = spec.observation.shape
    obs = _tensor(batch, "observations", index, "float32")
    n = len(obs) if obs.ndim else 0
    if n == 0:
        raise InvalidArgument(f"batch {index}: observations has no rows; every batch needs at least one transition")
    arrays = {
        "observations": obs,
        "next_observations": _tensor(batch, "next_observations", index, "float32"),
        "rewards": _tensor(batch, "rewards", index, "float32"),
        "terminated": _tensor(batch, "terminated", index, "bool"),
        "actions": _tensor(batch, "actions", index, "int64" if spec.action.kind == "discrete" else "float32"),
    }
    if batch.HasField("truncated"):
        arrays["truncated"] = _tensor(batch, "truncated", index, "bool")
    if batch.HasField("episode_ids"):
        arrays["episode_ids"] = _tensor(batch, "episode_ids", index, "int64")
    act_shape = () if spec.action.kind == "discrete" else spec.action.shape
    expected = {"observations": obs_shape, "next_observations": obs_shape, "actions": act_shape}
    for name, array in arrays.items():
        shape = (n, *expected.get(name, ()))
        if array.shape != shape:
            raise InvalidArgument(f"batch {index} {name}: shape must be {list(shape)} (N={n} rows from "
                                  f"observations), got {list(array.shape)}")
    for name in ("observations", "next_observations"):
        _check_box_values(arrays[name], spec.observation, index, name)
    if not np.isfinite(arrays["rewards"]).all():
        row = np.flatnonzero(~np.isfinite(arrays["rewards"]))[0]
        raise InvalidArgument(f"batch {index} rewards: row {row} holds NaN or inf; every value must be finite")
    actions = arrays["actions"]
    if spec.action.kind == "discrete":
        outside = np.flatnonzero((actions < 0) | (actions >= spec.action.n))
        if len(outside):
            raise InvalidArgument(f"batch {index} actions: row {outside[0]} = {actions[outside[0]]} is not in "
                                  f"0..{spec.action.n - 1} (discrete n={spec.action.n})")
    else:
        _check_box_values(actions, spec.action, index, "actions")
    terminated = arrays["terminated"]
    truncated = arrays.get("truncated", np.zeros(n, dtype=bool))
    episode_ids = episodes.assign(index, arrays.get("episode_ids"), terminated | truncated)
    return Transitions(
        obs=obs.reshape(n, -1),
        actions=actions if spec.action.kind == "discrete" else actions.reshape(n, -1),
        rewards=arrays["rewards"],
        next_obs=arrays["next_observations"].reshape(n, -1),
        terminated=terminated,
        truncated=truncated,
        episode_ids=episode_ids,
    )


def _stage(directory: Path, index: int, rows: Transitions) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **vars(rows))
    files.write_bytes_atomic(directory / _BATCH_FILE.format(index), buffer.getvalue())


def _staged(directory: Path, count: int) -> Transitions:
    parts = []
    for index in range(count):
        with np.load(directory / _BATCH_FILE.format(index), allow_pickle=False) as arrays:
            parts.append(Transitions(**{name: arrays[name] for name in arrays.files}))
    joined = Transitions(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])})
    # Ids from the client may be any int64s; stored ids count episodes from 0 in order.
    _, first_rows, inverse = np.unique(joined.episode_ids, return_index=True, return_inverse=True)
    joined.episode_ids = np.argsort(np.argsort(first_rows))[inverse].astype(np.int64)
    return joined


class _Target:
    """Where the upload goes: a new name, or the next version after an existing dataset."""

    def __init__(self, store: SimulatorStore, header: simulator_pb2.UploadHeader) -> None:
        ids.check_name("header name", header.name, optional=True)
        ids.check_id("header append_to_dataset_id", header.append_to_dataset_id, optional=True)
        ids.check_name("header env_spec.env_id", header.env_spec.env_id, optional=True)
        self.spec = checked_spec(header)
        self.base: tuple[simulator_pb2.Dataset, Transitions] | None = None
        self.name = header.name
        if header.append_to_dataset_id:
            base = store.dataset(header.append_to_dataset_id)
            base_spec, base_rows = store.transitions(header.append_to_dataset_id)
            if header.name and header.name != base.name:
                raise InvalidArgument(f"header name {header.name!r} differs from the name {base.name!r} of dataset "
                                      f"{base.dataset_id!r}; an appended version keeps its name (leave name empty)")
            # Logged data may leave env_id empty: it then means "whatever the base was collected from".
            spec = replace(self.spec, env_id=self.spec.env_id or base_spec.env_id)
            if spec != base_spec:
                ours, theirs = datasets.describe_spec(spec), datasets.describe_spec(base_spec)
                difference = f"{theirs} vs {ours}" if ours != theirs else f"{ours}, but the bounds differ"
                raise FailedPrecondition(
                    f"header env_spec differs from the spec of dataset {base.dataset_id!r} ({difference}); append "
                    f"only data of the same spec, or upload under a new name"
                )
            self.spec, self.base, self.name = spec, (base, base_rows), base.name
        elif not header.name:
            raise InvalidArgument("header name is required for a new dataset (or set append_to_dataset_id)")


def _received(
    requests: Iterator[simulator_pb2.UploadTransitionsRequest],
) -> Iterator[simulator_pb2.UploadTransitionsRequest]:
    """The client's messages; a client that cancels or goes away ends the upload as CANCELLED."""
    try:
        yield from requests
    except grpc.RpcError as exc:
        raise Cancelled("the client cancelled the upload before committing it; nothing was stored") from exc


def upload(
    store: SimulatorStore,
    requests: Iterator[simulator_pb2.UploadTransitionsRequest],
) -> Iterator[simulator_pb2.UploadTransitionsResponse]:
    """Runs one upload stream: yields a BatchAck per durably staged batch, then, after the client's
    UploadCommit, the committed Dataset."""
    requests = _received(requests)
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument("the first message of an upload must be an UploadHeader with env_spec and name")
    target = _Target(store, first.header)
    staging = store.new_staging_dir()
    try:
        episodes = _Episodes()
        stored = 0
        count = 0
        commit: simulator_pb2.UploadCommit | None = None
        for position, request in enumerate(requests, start=1):
            part = request.WhichOneof("part")
            if commit is not None:
                raise InvalidArgument(f"message {position} of the upload comes after its UploadCommit; the commit "
                                      "must be the last message")
            if part == "commit":
                commit = request.commit
                continue
            if part != "batch":
                what = "a second header" if part == "header" else "empty (neither header, batch nor commit)"
                raise InvalidArgument(f"message {position} of the upload is {what}; send one header, then batches, "
                                      "then an UploadCommit")
            rows = decode_batch(request.batch, target.spec, count, episodes)
            stored += len(rows)
            if stored > MAX_UPLOAD_TRANSITIONS:
                raise ResourceExhausted(f"batch {count}: the upload exceeds {MAX_UPLOAD_TRANSITIONS} transitions; "
                                      f"split it and append the rest as further versions")
            _stage(staging, count, rows)
            yield simulator_pb2.UploadTransitionsResponse(
                ack=simulator_pb2.BatchAck(batch_index=count, transitions_stored=stored)
            )
            count += 1
        if commit is None:
            raise InvalidArgument(f"the upload ended after {count} batches without an UploadCommit; nothing was stored "
                            "(send UploadCommit last to store the batches)")
        if commit.batches != count:
            raise InvalidArgument(f"UploadCommit says {commit.batches} batches were sent, but {count} arrived; "
                                     "nothing was stored")
        if count == 0:
            raise InvalidArgument("the upload ended after its header without any TransitionBatch; send at least one")
        rows = _staged(staging, count)
        if target.base is not None:
            rows = datasets.concatenate(target.base[1], rows)
        dataset = store.save_dataset(
            datasets.describe(
                new_id("ds"), target.spec, rows, name=target.name, origin="upload",
                parent_dataset_id=target.base[0].dataset_id if target.base else "",
                create_time=grpc_server.now_timestamp(),
            ),
            rows,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("uploaded dataset=%s name=%s version=%d transitions=%d batches=%d", dataset.dataset_id, dataset.name,
             dataset.version, dataset.num_transitions, count)
    yield simulator_pb2.UploadTransitionsResponse(dataset=dataset)
