"""The edge runtime's durable state: installed packets and which one to serve, kept across restarts.

Layout:
  <root>/packets/<sha256>/packet.zip   an installed packet, byte for byte as it was verified
  <root>/packets/<sha256>/<payload>    its payload (model.onnx or adapter.onnx_adapter), extracted: onnxruntime
                                       memory-maps adapters from files
  <root>/staging/                      packets being loaded; emptied at start-up (when the store is writable)
  <root>/current                       JSON pointer, replaced atomically: the packet to serve, the one before it
                                       (for Rollback), the highest version installed per packet name, and the
                                       adaptable models kept as bases for adapter packets

A packet directory appears in one rename from staging/, so a crash never leaves half a packet; `current` is
only rewritten after the packet it names is complete on disk. Nothing is written at start-up, so a store on a
read-only volume serves. Everything read back is verified again by the runtime (hash and signature).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasma import blobs, files, ids, packet

_SHA256 = re.compile(r"[0-9a-f]{64}")
PACKET_FILE = "packet.zip"
# Adaptable models kept for adapter packets beyond the current and previous packet.
KEEP_BASES = 2


class StoreError(Exception):
    """The stored state cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One installed packet as the pointer records it."""

    sha256: str
    packet_id: str
    name: str = ""
    version: int = 0
    kind: str = packet.KIND_MODEL
    model_sha256: str = ""  # kind model: sha256 of model.onnx (what adapter packets name as their base)
    base_sha256: str = ""  # kind adapter: the installed base packet's archive sha256
    adaptable: bool = False  # kind model: adapter packets can be applied to it (it has adapter slots)

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "packet_id": self.packet_id, "name": self.name, "version": self.version,
                "kind": self.kind, "model_sha256": self.model_sha256, "base_sha256": self.base_sha256,
                "adaptable": self.adaptable}

    @classmethod
    def from_json(cls, raw: Any) -> Entry:
        entry = cls(sha256=str(raw["sha256"]), packet_id=str(raw["packet_id"]), name=str(raw.get("name", "")),
                    version=int(raw.get("version", 0)), kind=str(raw.get("kind", packet.KIND_MODEL)),
                    model_sha256=str(raw.get("model_sha256", "")), base_sha256=str(raw.get("base_sha256", "")),
                    adaptable=bool(raw.get("adaptable", False)))
        for value in (entry.sha256, *(v for v in (entry.base_sha256,) if v)):
            if not _SHA256.fullmatch(value):
                raise ValueError(f"sha256 {value!r} is not 64 lowercase hex digits")
        ids.check_id("packet_id", entry.packet_id)  # the rule every manifest's id follows (plasma.ids)
        return entry


@dataclass(frozen=True)
class State:
    current: Entry | None = None
    previous: Entry | None = None
    # Highest version ever installed per packet name; Rollback does not lower it.
    high_water: dict[str, int] = field(default_factory=dict)
    # Adaptable model packets kept as bases, newest last.
    bases: tuple[Entry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current.to_json() if self.current else None,
                "previous": self.previous.to_json() if self.previous else None,
                "high_water": dict(sorted(self.high_water.items())), "bases": [b.to_json() for b in self.bases]}

    @classmethod
    def from_json(cls, raw: Any) -> State:
        if "current" not in raw and "sha256" in raw:  # the single-packet pointer of earlier versions
            return cls(current=Entry.from_json(raw))
        return cls(
            current=Entry.from_json(raw["current"]) if raw.get("current") else None,
            previous=Entry.from_json(raw["previous"]) if raw.get("previous") else None,
            high_water={str(k): int(v) for k, v in raw.get("high_water", {}).items()},
            bases=tuple(Entry.from_json(b) for b in raw.get("bases", [])),
        )

    def installed(self) -> set[str]:
        entries = [self.current, self.previous, *self.bases]
        return {e.sha256 for e in entries if e is not None} | {e.base_sha256 for e in entries if e and e.base_sha256}


class Staged:
    """A packet written to staging/, not yet installed: `payload_path` is where onnxruntime may read it."""

    def __init__(self, directory: Path, sha256: str, payload_name: str) -> None:
        self.directory = directory
        self.sha256 = sha256
        self.payload_path = directory / payload_name

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class EdgeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.packets_dir = root / "packets"
        self.staging_dir = root / "staging"
        self.pointer = root / "current"
        for directory in (root, self.packets_dir):
            directory.mkdir(parents=True, exist_ok=True)  # no write when they exist (read-only volumes)
        if self.staging_dir.is_dir() and os.access(self.staging_dir, os.W_OK):
            for leftover in self.staging_dir.iterdir():  # loads a crash interrupted
                shutil.rmtree(leftover, ignore_errors=True)
        if os.access(self.packets_dir, os.W_OK):
            files.remove_stale_temporaries(root)
            files.remove_stale_temporaries(self.packets_dir)

    # Reading

    def state(self) -> State:
        if not self.pointer.is_file():
            return State()
        try:
            return State.from_json(json.loads(self.pointer.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"store pointer {self.pointer} is unusable: {exc!r}") from exc

    def read(self, entry: Entry) -> bytes:
        """An installed packet's bytes, checked against the sha256 it was installed under."""
        path = self.packets_dir / entry.sha256 / PACKET_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"stored packet {entry.packet_id} ({path}) cannot be read: {exc}") from exc
        actual = blobs.sha256_hex(data)
        if actual != entry.sha256:
            raise StoreError(f"stored packet {entry.packet_id} is damaged: its bytes hash to {actual}, "
                             f"installed as {entry.sha256}")
        return data

    def payload_path(self, entry: Entry, payload_name: str) -> Path:
        return self.packets_dir / entry.sha256 / payload_name

    # Writing: stage -> (caller builds and warms a session from the staged files) -> commit

    def stage(self, data: bytes, payload_name: str, payload: bytes) -> Staged:
        sha256 = blobs.sha256_hex(data)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(dir=self.staging_dir, prefix=f"{sha256[:16]}-"))
        staged = Staged(directory, sha256, payload_name)
        try:
            for name, content in ((PACKET_FILE, data), (payload_name, payload)):
                with open(directory / name, "wb") as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            staged.discard()
            raise
        return staged

    def commit(self, staged: Staged | None, state: State) -> None:
        """Moves a staged packet into packets/ (if not there already), then points `current` at the new state
        in one atomic replace, then removes packets the state no longer names."""
        if staged is not None:
            target = self.packets_dir / staged.sha256
            if target.is_dir():  # the same bytes were installed before (e.g. kept as a base)
                staged.discard()
            else:
                os.rename(staged.directory, target)
                files.fsync_dir(self.packets_dir)
        files.write_bytes_atomic(self.pointer, json.dumps(state.to_json(), sort_keys=True, indent=1).encode())
        keep = state.installed()
        for directory in self.packets_dir.iterdir():
            if _SHA256.fullmatch(directory.name) and directory.name not in keep:
                shutil.rmtree(directory, ignore_errors=True)
