"""The edge runtime's durable state: the packet it serves, kept across restarts.

Layout:
  <root>/packets/<sha256>.zip  the current packet (older ones are removed once it is current)
  <root>/current               JSON {"sha256": ..., "packet_id": ...}, replaced atomically: what to serve at start
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from plasma.core import blobs, files

_SHA256 = re.compile(r"[0-9a-f]{64}")


class StoreError(Exception):
    """The stored packet cannot be trusted; the message says why."""


class EdgeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.packets_dir = root / "packets"
        self.packets_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(root)
        files.remove_stale_temporaries(self.packets_dir)

    def save_current(self, data: bytes, packet_id: str) -> None:
        """Writes the packet, then points `current` at it; a crash in between keeps the previous one."""
        sha256 = blobs.sha256_hex(data)
        files.write_bytes_atomic(self.packets_dir / f"{sha256}.zip", data)
        pointer = json.dumps({"sha256": sha256, "packet_id": packet_id}, sort_keys=True).encode()
        files.write_bytes_atomic(self.root / "current", pointer)
        for stale in self.packets_dir.glob("*.zip"):
            if stale.name != f"{sha256}.zip":
                stale.unlink(missing_ok=True)

    def load_current(self) -> bytes | None:
        """The current packet's bytes, checked against the recorded sha256; None when there is none."""
        pointer_path = self.root / "current"
        if not pointer_path.is_file():
            return None
        try:
            sha256 = str(json.loads(pointer_path.read_bytes())["sha256"])
            if not _SHA256.fullmatch(sha256):
                raise ValueError(f"sha256 {sha256!r} is not 64 lowercase hex digits")
            data = (self.packets_dir / f"{sha256}.zip").read_bytes()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"stored packet pointer {pointer_path} is unusable: {exc!r}") from exc
        actual = blobs.sha256_hex(data)
        if actual != sha256:
            raise StoreError(f"stored packet {sha256}.zip is damaged: its bytes hash to {actual}")
        return data
