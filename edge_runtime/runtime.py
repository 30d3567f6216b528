"""What the edge serves: the current packet, swapped in whole, the store behind it, and the request figures.

Loading a packet: verify (trusted signature, canonical manifest, file hashes) -> check its version against the
highest installed for its name (and, for an adapter, that its base is held) -> write it to staging/ -> build
the onnxruntime session -> warm-up inference -> swap the served reference under a lock -> atomically replace
the store's `current` pointer. A failure at any step leaves the packet being served untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime import errors, self_test
from edge_runtime.metrics import Metrics
from edge_runtime.session import ServedPacket, new_session
from edge_runtime.store import KEEP_BASES, EdgeStore, Entry, Staged, State, StoreError
from plasma import log as plog
from plasma import packet
from plasma.common.v1 import common_pb2
from plasma.server.errors import FailedPrecondition
from plasma.signing import VerifyingKey, describe

log = plog.get(__name__)


@dataclass(frozen=True)
class Status:
    current: ServedPacket | None
    previous: Entry | None
    requests_served: int
    requests_failed: int
    observations_served: int
    packets_loaded: int
    packets_refused: int
    latency_ms: tuple[float, float, float]  # p50, p90, p99 over the recent window
    latency_count: int


class Runtime:
    def __init__(self, store: EdgeStore, trusted_keys: Mapping[str, VerifyingKey], intra_threads: int = 1,
                 inter_threads: int = 1, max_batch: int = 1024, metrics: Metrics | None = None) -> None:
        self._store = store
        self.trusted_keys = dict(trusted_keys)
        self._intra_threads = intra_threads
        self._inter_threads = inter_threads
        self.max_batch = max_batch
        self.metrics = metrics or Metrics()
        self._swap_lock = threading.Lock()  # guards the reference swap (readers take a plain attribute read)
        self._load_lock = threading.Lock()  # one load or rollback at a time, so the store and memory agree
        self._current: ServedPacket | None = None
        self._state = State()
        # Adaptable models in memory, by model.onnx sha256, so adapter packets reuse their warm session.
        self._bases: dict[str, ServedPacket] = {}

    @property
    def current(self) -> ServedPacket | None:
        return self._current

    # Start-up

    def restore(self) -> ServedPacket | None:
        """Serves the stored packet (offline start-up). If it no longer verifies, the one before it is tried;
        a store with neither serves nothing until a LoadPacket."""
        try:
            state = self._store.state()
        except StoreError as exc:
            log.error("store not used: %s", exc)
            return None
        self._state = state
        for label, entry in (("current", state.current), ("previous", state.previous)):
            if entry is None:
                continue
            try:
                served = self._open(entry)
            except (StoreError, packet.PacketError, errors.Refused) as exc:
                log.error("stored %s packet=%s not served: %s", label, entry.packet_id, exc)
                continue
            if label == "previous":
                log.warning("serving the previous packet=%s v%d: the current one failed its checks",
                            served.packet_id, served.version)
            self._swap(served)
            self._bases = {e.model_sha256: b for e in state.bases if (b := self._known(e)) is not None}
            return served
        return None

    def _open(self, entry: Entry) -> ServedPacket:
        """An installed packet, verified again (the disk is not trusted more than the network)."""
        try:
            verified = packet.verify(self._store.read(entry), self.trusted_keys)
        except packet.PacketError as exc:
            raise errors.refusal(exc) from exc
        base = self._base_for(verified.manifest) if verified.manifest.kind == packet.KIND_ADAPTER else None
        return self._build(verified, self._store.payload_path(entry, verified.manifest.payload.path), base)

    # Loading

    def load(self, data: bytes) -> tuple[ServedPacket, Entry | None]:
        """Installs and serves a packet; returns it and the entry now kept for Rollback."""
        try:
            with self._load_lock:
                return self._load(data)
        except errors.Refused as exc:
            self.metrics.refused(exc.reason)
            raise

    def _load(self, data: bytes) -> tuple[ServedPacket, Entry | None]:
        try:
            verified = packet.verify(data, self.trusted_keys)
        except packet.PacketError as exc:
            raise errors.refusal(exc) from exc
        manifest = verified.manifest
        highest = self._state.high_water.get(manifest.name, 0)
        if manifest.version <= highest:
            raise errors.NotNewer(
                f"packet {manifest.packet_id} is {manifest.name} v{manifest.version}, not newer than v{highest}, "
                f"the highest version of {manifest.name} installed here; only Rollback goes back")
        base = self._base_for(manifest) if manifest.kind == packet.KIND_ADAPTER else None
        staged = self._store.stage(data, manifest.payload.path, verified.payload)
        try:
            served = self._build(verified, staged.payload_path, base)
            entry = self._entry(served)
            state = self._state
            bases = state.bases
            if manifest.adapter_slots:
                bases = (*[b for b in bases if b.sha256 != entry.sha256], entry)
            state = State(current=entry, previous=state.current,
                          high_water={**state.high_water, manifest.name: manifest.version},
                          bases=self._trim(bases, entry, state.current))
            self._commit(served, staged, state)
        except BaseException:
            staged.discard()
            raise
        self.metrics.loaded()
        return served, state.previous

    def _entry(self, served: ServedPacket) -> Entry:
        manifest = served.manifest
        return Entry(sha256=served.sha256, packet_id=served.packet_id, name=manifest.name, version=served.version,
                     kind=manifest.kind,
                     model_sha256=manifest.payload.sha256 if manifest.kind == packet.KIND_MODEL else "",
                     base_sha256=served.base.sha256 if served.base is not None else "",
                     adaptable=bool(manifest.adapter_slots))

    @staticmethod
    def _trim(bases: tuple[Entry, ...], *keep: Entry | None) -> tuple[Entry, ...]:
        """The newest KEEP_BASES bases, plus any the kept packets need."""
        needed = {e.sha256 for e in keep if e} | {e.base_sha256 for e in keep if e and e.base_sha256}
        newest = {b.sha256 for b in bases[-KEEP_BASES:]}
        return tuple(b for b in bases if b.sha256 in newest or b.sha256 in needed)

    def _base_for(self, manifest: packet.Manifest) -> ServedPacket:
        assert manifest.base is not None
        want = manifest.base
        base = self._bases.get(want.model_sha256)
        if base is None:
            entry = next((b for b in self._state.bases if b.model_sha256 == want.model_sha256), None)
            if entry is None:
                held = ", ".join(f"{b.name} v{b.version} ({b.packet_id})" for b in self._state.bases) or "none"
                raise errors.BaseMissing(
                    f"adapter packet {manifest.packet_id} needs base {want.name} v{want.version} ({want.packet_id}, "
                    f"model sha256 {want.model_sha256}), which this runtime does not hold (held bases: {held}); "
                    "load that adaptable packet first")
            base = self._open(entry)
        mismatch = []
        if (base.manifest.observation_space, base.manifest.action_space) != \
                (manifest.observation_space, manifest.action_space):
            mismatch.append("its observation/action spaces differ from the base's")
        slots, params = base.slots(), {t.name: t.shape for t in manifest.adapter_parameters}
        if not params.keys() <= slots.keys() or any(slots[n] != s for n, s in params.items()):
            mismatch.append(f"its weights {params} do not fit the base's LoRA inputs {slots}")
        if mismatch:
            raise errors.BaseMismatch(f"adapter packet {manifest.packet_id} cannot apply to base {base.packet_id}: "
                                      + "; ".join(mismatch))
        return base

    def _build(self, verified: packet.Packet, payload_path: Path, base: ServedPacket | None) -> ServedPacket:
        return checked_session(verified, payload_path, base, self._intra_threads, self._inter_threads)

    def _commit(self, served: ServedPacket, staged: Staged | None, state: State) -> None:
        """Swap first (requests see the new packet from now on), then make it durable; undo the swap if the
        store cannot record it, so memory and disk never disagree about what is served."""
        before = self._current
        self._swap(served)
        try:
            self._store.commit(staged, state)
        except BaseException:
            self._swap(before)
            raise
        self._state = state
        self._bases = {e.model_sha256: b for e in state.bases
                       if (b := self._known(e)) is not None}

    def _known(self, entry: Entry) -> ServedPacket | None:
        candidates = [self._current, *self._bases.values()]
        candidates += [c.base for c in candidates if c is not None and c.base is not None]
        return next((c for c in candidates if c is not None and c.sha256 == entry.sha256), None)

    def _swap(self, served: ServedPacket | None) -> None:
        with self._swap_lock:
            self._current = served
        self.metrics.serving(served)

    # Rollback

    def rollback(self, expected_packet_id: str = "") -> tuple[ServedPacket, Entry]:
        """Serves the previous packet again; returns it and the entry that was rolled back from."""
        try:
            with self._load_lock:
                state = self._state
                previous, current = state.previous, state.current
                if previous is None or current is None:
                    raise errors.NothingToRollBack("nothing to roll back to: no previous packet is kept "
                                                   "(a rollback keeps none either)")
                if expected_packet_id and expected_packet_id != previous.packet_id:
                    raise errors.NotPrevious(f"the kept previous packet is {previous.packet_id} "
                                             f"({previous.name} v{previous.version}), not {expected_packet_id}")
                served = self._open(previous)
                self._commit(served, None, State(current=previous, previous=None, high_water=state.high_water,
                                                 bases=self._trim(state.bases, previous)))
        except errors.Refused as exc:
            self.metrics.refused(exc.reason)
            raise
        self.metrics.rolled_back()
        return served, current

    # Serving

    def act_tensor(self, observation: common_pb2.Tensor) -> tuple[np.ndarray, bool, ServedPacket]:
        """From the wire: (actions [batch...], whether the request had no batch axis, the packet)."""
        started = time.perf_counter_ns()
        served = self._current
        try:
            if served is None:
                raise FailedPrecondition("no packet loaded: send one with LoadPacket first")
            actions, single = served.answer(observation, self.max_batch)
        except Exception:
            self.metrics.failed()
            raise
        self.metrics.served(len(actions), time.perf_counter_ns() - started)
        return actions, single, served

    def status(self) -> Status:
        figures = self.metrics.snapshot()
        return Status(current=self._current, previous=self._state.previous if self._current else None,
                      requests_served=figures.served, requests_failed=figures.failed,
                      observations_served=figures.observations, packets_loaded=figures.loaded,
                      packets_refused=figures.refused, latency_ms=figures.latency_ms,
                      latency_count=figures.latency_count)

    def describe_trust(self) -> str:
        return describe(self.trusted_keys)


def checked_session(verified: packet.Packet, payload_path: Path | None, base: ServedPacket | None,
                    intra_threads: int = 1, inter_threads: int = 1) -> ServedPacket:
    """A warm session over the packet's graph that passed the packet's self-test on this CPU, or else over its
    float fallback if that passes; refuses the packet when neither does. `payload_path` is the adapter's file, for
    an adapter packet on `base`. Also what plasma.sdk.offline serves from, so a device acts as its edge would."""
    try:
        if base is not None:
            served = ServedPacket(verified, base.session, adapter_path=payload_path, base=base)
        else:
            served = ServedPacket(verified, new_session(verified.payload, intra_threads, inter_threads))
        report = served.check_self_test()
        if report is None or report.passed:
            return served
        if verified.fallback is not None:
            fallback = ServedPacket(verified, new_session(verified.fallback, intra_threads, inter_threads),
                                    fallback=True)
            fallback_report = fallback.check_self_test()
            if fallback_report is not None and fallback_report.passed:
                log.warning("packet=%s: its %s graph failed its self-test on this CPU (%s; CPU features %s); "
                            "serving its fp32 fallback", served.packet_id, served.precision, report.describe(),
                            ",".join(self_test.cpu_features()))
                return fallback
    except packet.PacketError as exc:
        raise errors.Malformed(str(exc)) from exc
    raise errors.SelfTestFailed(
        f"packet {served.packet_id} failed its self-test on this CPU: its {served.precision} graph "
        f"{report.describe()}; CPU features {', '.join(self_test.cpu_features()) or 'none detected'}"
        + ("; its fp32 fallback failed too" if verified.fallback is not None else
           "; recompile it with a larger precision (fp16 or fp32) or with float_fallback"))
