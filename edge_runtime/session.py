"""Serving a packet: one verified onnxruntime session, observation checks, and the swappable runtime state."""

from __future__ import annotations

import collections
import datetime
import threading
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edge_runtime.store import EdgeStore, StoreError
from plasma import packet
from plasma.core import blobs
from plasma.core import logging as plog
from plasma.core.errors import FailedPrecondition, InvalidArgument

log = plog.get(__name__)

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Requests whose inference latency GetStatus summarises.
LATENCY_WINDOW = 1024


class PacketSession:
    """A packet that passed every check and a warm onnxruntime session for its model. Immutable."""

    def __init__(self, data: bytes, intra_threads: int, inter_threads: int) -> None:
        self.manifest, model = packet.read(data)
        self.sha256 = blobs.sha256_hex(data)
        self.size_bytes = len(data)
        self.loaded_at = datetime.datetime.now(datetime.UTC)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_threads
        options.inter_op_num_threads = inter_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise packet.PacketError(f"model.onnx cannot be loaded by onnxruntime {ort.__version__}: {exc}") from exc
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = {o.name for o in self._session.get_outputs()}
        if inputs != [packet.INPUT_NAME] or not {packet.ACTION_OUTPUT, packet.RAW_OUTPUT} <= outputs:
            raise packet.PacketError(f"model.onnx has inputs {inputs} and outputs {sorted(outputs)}; expected "
                                     f"[{packet.INPUT_NAME!r}] and {packet.ACTION_OUTPUT!r}, {packet.RAW_OUTPUT!r}")
        self._warm_up()

    @property
    def packet_id(self) -> str:
        return self.manifest.packet_id

    def _warm_up(self) -> None:
        # The first run allocates buffers; doing it here keeps that cost off the first request and
        # proves the graph runs and answers in the promised shape before it replaces a working packet.
        zeros = np.zeros((2, self.manifest.obs_dim), np.float32)
        try:
            action = self.run(zeros)
        except Exception as exc:
            raise packet.PacketError(f"model.onnx fails on a zero observation batch: {exc}") from exc
        expected = (2,) if self.manifest.action_space.kind == "discrete" else (2, self.manifest.action_space.flat_dim)
        if action.shape != expected:
            raise packet.PacketError(f"model.onnx answers a batch of 2 with action shape {list(action.shape)}, "
                                     f"expected {list(expected)}")

    def prepare(self, observation: np.ndarray, max_batch: int) -> tuple[np.ndarray, bool]:
        """Checks an observation against the packet; returns it as [batch, obs_dim] float32 and whether
        the caller sent a single observation (no batch axis)."""
        shape = self.manifest.observation_space.shape
        if observation.dtype not in _FLOAT_DTYPES:
            raise InvalidArgument(f"observation dtype must be float32 or float64, got {observation.dtype}")
        single = observation.shape == shape
        batched = observation.ndim == len(shape) + 1 and observation.shape[1:] == shape
        if not (single or (batched and 1 <= observation.shape[0] <= max_batch)):
            raise InvalidArgument(
                f"observation shape {list(observation.shape)} does not fit packet {self.packet_id}: expected "
                f"{list(shape)} or [batch, {', '.join(map(str, shape))}] with batch in 1..{max_batch}"
            )
        with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, reported below
            batch = observation.reshape(1 if single else observation.shape[0], -1).astype(np.float32, copy=False)
        finite = np.isfinite(batch)
        if not finite.all():
            where = np.argwhere(~finite.reshape((-1, *shape)))[0].tolist()
            raise InvalidArgument(f"observation has a non-finite value (NaN, inf, or beyond float32 range) "
                                  f"at index {where[1:] if single else where}")
        return batch, single

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Actions for a [batch, obs_dim] float32 array: [batch] int64 or [batch, act_dim] float32."""
        return self._session.run([packet.ACTION_OUTPUT], {packet.INPUT_NAME: batch})[0]


@dataclass(frozen=True)
class Status:
    session: PacketSession | None
    requests_served: int
    requests_failed: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_count: int


class Runtime:
    """What the edge serves: the current packet, swapped in whole, plus request counts and latencies."""

    def __init__(self, store: EdgeStore, intra_threads: int, inter_threads: int, max_batch: int) -> None:
        self._store = store
        self._intra_threads = intra_threads
        self._inter_threads = inter_threads
        self.max_batch = max_batch
        self._lock = threading.Lock()  # guards the fields below
        self._load_lock = threading.Lock()  # one load at a time, so the store and memory agree
        self._current: PacketSession | None = None
        self._served = 0
        self._failed = 0
        self._latencies_ns: collections.deque[int] = collections.deque(maxlen=LATENCY_WINDOW)

    def restore(self) -> PacketSession | None:
        """Serves the stored packet, if any (offline start-up); a damaged one is logged and not served."""
        try:
            data = self._store.load_current()
            if data is None:
                return None
            session = PacketSession(data, self._intra_threads, self._inter_threads)
        except (StoreError, packet.PacketError) as exc:
            log.error("stored packet not served: %s", exc)
            return None
        with self._lock:
            self._current = session
        return session

    def load(self, data: bytes) -> PacketSession:
        """Verifies and warms a packet, persists it, then swaps it in; on any failure the old one keeps serving."""
        session = PacketSession(data, self._intra_threads, self._inter_threads)
        with self._load_lock:
            self._store.save_current(data, session.packet_id)
            with self._lock:
                self._current = session
        return session

    def act(self, observation: np.ndarray) -> tuple[np.ndarray, str]:
        """The action(s) for an observation (or batch) and the id of the packet that chose them."""
        started = time.perf_counter_ns()
        with self._lock:
            session = self._current
        try:
            if session is None:
                raise FailedPrecondition("no packet loaded: send one with LoadPacket first")
            batch, single = session.prepare(observation, self.max_batch)
            actions = session.run(batch)
        except Exception:
            self.count_failure()
            raise
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            self._served += 1
            self._latencies_ns.append(elapsed)
        return (actions[0] if single else actions), session.packet_id

    def count_failure(self) -> None:
        with self._lock:
            self._failed += 1

    def status(self) -> Status:
        with self._lock:
            latencies = np.array(self._latencies_ns, dtype=np.float64) / 1e6
            session, served, failed = self._current, self._served, self._failed
        p50, p99 = np.percentile(latencies, [50, 99]).tolist() if latencies.size else (0.0, 0.0)
        return Status(session, served, failed, p50, p99, int(latencies.size))
