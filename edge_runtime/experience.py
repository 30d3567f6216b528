"""Experience from Control streams: the transitions a device's control loop went through, kept in a bounded,
append-only log on disk that survives restarts, and exported in the form UploadTransitions takes
(docs/feedback-loop.md).

The log is a directory of segments, `segment-<first sequence>.log`, each a run of frames: payload length and
CRC-32, then the payload (one transition). Frames go to the file with one write each, so a crash of the process
loses nothing written; the file is fsynced at most every SYNC_SECONDS and when a segment is closed, so a power
loss costs at most that much and leaves at worst a torn last frame. Reading stops at a segment's first frame
that does not check out, and a restart always starts a new segment, so nothing is ever written after a torn
frame. When the next frame would take the log past its size cap, the oldest segments are deleted.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plasma import files
from plasma import log as plog
from plasma.common.v1 import common_pb2
from plasma.edge.v1 import edge_pb2

log = plog.get(__name__)

# What ExportExperience streams: the simulator's transitions archive (ExportDataset's media type).
MEDIA_TYPE = "application/vnd.plasma.transitions+npz"
# Every write reaches the file at once; fsync (the slow part, milliseconds) at most this often on the request path.
SYNC_SECONDS = 0.5
# Segments per cap: the share of the log one segment holds, and so what dropping the oldest one gives back.
SEGMENTS_PER_CAP = 8
_SEGMENT = "segment-{:020d}.log"
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
# sequence, episode, flags, reward, observation length, action length (-1: one discrete action, int64).
_RECORD = struct.Struct("<qqBfHh")
_TERMINATED, _TRUNCATED = 1, 2
_DISCRETE = -1
_WIRE_DTYPES: dict[int, np.dtype[Any]] = {common_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
                                        common_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8")}


@dataclass(frozen=True)
class Transition:
    obs: np.ndarray  # [obs_dim] float32
    action: np.ndarray  # [] int64 (discrete) or [act_dim] float32 (box)
    reward: float
    next_obs: np.ndarray  # [obs_dim] float32
    terminated: bool
    truncated: bool


@dataclass(frozen=True)
class _Row:
    sequence: int
    episode: int
    transition: Transition


@dataclass
class _Segment:
    path: Path
    size: int


def _encode(sequence: int, episode: int, t: Transition) -> bytes:
    discrete = t.action.dtype == np.int64
    action = t.action.astype("<i8" if discrete else "<f4").reshape(-1)
    flags = (_TERMINATED if t.terminated else 0) | (_TRUNCATED if t.truncated else 0)
    payload = b"".join((
        _RECORD.pack(sequence, episode, flags, t.reward, t.obs.size, _DISCRETE if discrete else action.size),
        t.obs.astype("<f4").tobytes(), t.next_obs.astype("<f4").tobytes(), action.tobytes()))
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> _Row:
    sequence, episode, flags, reward, obs_len, act_len = _RECORD.unpack_from(payload)
    at = _RECORD.size
    obs = np.frombuffer(payload, "<f4", obs_len, at)
    next_obs = np.frombuffer(payload, "<f4", obs_len, at + 4 * obs_len)
    at += 8 * obs_len
    action = (np.frombuffer(payload, "<i8", 1, at)[0] if act_len == _DISCRETE
              else np.frombuffer(payload, "<f4", act_len, at))
    return _Row(sequence, episode, Transition(obs, np.asarray(action), float(reward), next_obs,
                                              bool(flags & _TERMINATED), bool(flags & _TRUNCATED)))


def read_segment(path: Path, size: int | None = None) -> tuple[list[_Row], str | None]:
    """The rows of one segment (its first `size` bytes), and why reading stopped early (None: it did not)."""
    with open(path, "rb") as file:
        data = file.read() if size is None else file.read(size)
    rows: list[_Row] = []
    at = 0
    while at < len(data):
        if at + _FRAME.size > len(data):
            return rows, f"a torn frame header at byte {at}"
        length, crc = _FRAME.unpack_from(data, at)
        payload = data[at + _FRAME.size : at + _FRAME.size + length]
        if len(payload) != length or length < _RECORD.size:
            return rows, f"a torn or impossible frame at byte {at}"
        if zlib.crc32(payload) != crc:
            return rows, f"a frame whose checksum does not match at byte {at}"
        try:
            rows.append(_decode(payload))
        except (struct.error, ValueError) as exc:
            return rows, f"a frame that does not decode at byte {at}: {exc}"
        at += _FRAME.size + length
    return rows, None


class ExperienceLog:
    """The on-disk log. Thread-safe: every Control stream appends to it, ExportExperience reads it."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(max_bytes // SEGMENTS_PER_CAP, 1)
        self._lock = threading.Lock()
        self._fd: int | None = None  # the active segment, opened at the first append after start-up
        self._synced_at = 0.0
        self._failing = False  # an append failed (e.g. the disk is full); logged once until one succeeds
        directory.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        self.next_sequence = 0
        for path in sorted(directory.glob("segment-*.log")):
            rows, problem = read_segment(path)
            if problem is not None:
                log.warning("experience segment %s: %d transitions read, the rest ignored: %s", path.name, len(rows),
                            problem)
            if not rows:  # nothing in it can be used; its name may be taken by the next segment
                path.unlink()
                continue
            self._segments.append(_Segment(path, path.stat().st_size))
            self.next_sequence = max(self.next_sequence, rows[-1].sequence + 1)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def append(self, transition: Transition, episode: int | None) -> int | None:
        """Records one transition of `episode` (None: it starts one, whose id is then its sequence number);
        returns its sequence number, or None when it could not be written (the log says why; serving goes on)."""
        with self._lock:
            sequence = self.next_sequence
            frame = _encode(sequence, sequence if episode is None else episode, transition)
            if len(frame) > self.segment_bytes:
                self._fail(f"a transition of {len(frame)} bytes does not fit a segment of {self.segment_bytes}")
                return None
            try:
                self._write(frame, sequence)
            except OSError as exc:
                self._fail(str(exc))
                self._close_active()
                return None
            self.next_sequence += 1
            self._failing = False
            return sequence

    def _write(self, frame: bytes, sequence: int) -> None:
        if self._fd is None or self._segments[-1].size + len(frame) > self.segment_bytes:
            self._close_active()
            path = self.directory / _SEGMENT.format(sequence)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._segments.append(_Segment(path, 0))
            # A new segment's name survives a power loss only once its directory is synced too.
            files.fsync_dir(self.directory)
        while self.size_bytes + len(frame) > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            oldest.path.unlink(missing_ok=True)
            log.info("experience log at its cap of %d bytes: dropped %s", self.max_bytes, oldest.path.name)
        os.write(self._fd, frame)
        self._segments[-1].size += len(frame)
        if time.monotonic() - self._synced_at >= SYNC_SECONDS:
            os.fsync(self._fd)
            self._synced_at = time.monotonic()

    def _fail(self, reason: str) -> None:
        if not self._failing:
            log.warning("experience not recorded (serving goes on): %s", reason)
        self._failing = True

    def _close_active(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close_active()

    def rows(self, from_sequence: int = 0) -> list[_Row]:
        """Every readable row with a sequence number of at least `from_sequence`, in sequence order."""
        with self._lock:
            segments = [(s.path, s.size) for s in self._segments]
        rows: list[_Row] = []
        for path, size in segments:
            try:
                found, _ = read_segment(path, size)
            except FileNotFoundError:  # dropped at the cap since the list was taken
                continue
            rows += [row for row in found if row.sequence >= from_sequence]
        return rows

    def export(self, from_sequence: int = 0) -> bytes | None:
        """The rows from `from_sequence` as a transitions archive, or None when there are none. Rows are grouped by
        episode (streams interleave in the log; an upload needs each episode's rows together), in order within
        one; only rows shaped like the newest one (the packet served now) are included."""
        rows = self.rows(from_sequence)
        if not rows:
            return None
        newest = rows[-1].transition
        rows = [r for r in rows if r.transition.obs.shape == newest.obs.shape
                and r.transition.action.shape == newest.action.shape
                and r.transition.action.dtype == newest.action.dtype]
        rows.sort(key=lambda r: (r.episode, r.sequence))
        buffer = io.BytesIO()
        np.savez(
            buffer,
            obs=np.stack([r.transition.obs for r in rows]).astype(np.float32),
            actions=np.stack([r.transition.action for r in rows]),
            rewards=np.array([r.transition.reward for r in rows], np.float32),
            next_obs=np.stack([r.transition.next_obs for r in rows]).astype(np.float32),
            terminated=np.array([r.transition.terminated for r in rows], bool),
            truncated=np.array([r.transition.truncated for r in rows], bool),
            episode_ids=np.array([r.episode for r in rows], np.int64),
            sequences=np.array([r.sequence for r in rows], np.int64),
        )
        return buffer.getvalue()

    def recorder(self) -> StreamRecorder:
        return StreamRecorder(self)


class StreamRecorder:
    """Pairs one Control stream's consecutive messages into transitions: the observation of one message, the action
    served for it, and the next message's reward, observation and done flags. A message carrying several
    observations, or no reward, breaks the chain: the next recorded transition starts a new episode."""

    def __init__(self, log: ExperienceLog) -> None:
        self._log = log
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # last observation and the action served for it
        self._episode: int | None = None

    def observe(self, request: edge_pb2.ControlRequest, actions: np.ndarray) -> None:
        """After the runtime answered `request` (so its observation passed every check) with `actions`
        ([1] int64 or [1, act_dim] float32 for one observation)."""
        if len(actions) != 1:
            self._pending = self._episode = None
            return
        obs = np.frombuffer(request.observation.data, _WIRE_DTYPES[request.observation.dtype]).astype(np.float32)
        if self._pending is not None and request.HasField("reward"):
            last_obs, last_action = self._pending
            if last_obs.shape == obs.shape:  # else a packet of another spec took over between the two
                recorded = self._log.append(Transition(last_obs, last_action, request.reward, obs, request.terminated,
                                                       request.truncated), self._episode)
                if self._episode is None:
                    self._episode = recorded
        elif self._pending is not None:
            self._episode = None
        if request.terminated or request.truncated:
            self._pending = self._episode = None
        else:
            self._pending = (obs, np.asarray(actions[0]))
