"""Packets kept on this machine, by packet id, so a device keeps what it downloaded and can act without the
network (plasma.sdk.offline).

Layout: <root>/<packet_id>/packet.zip and <root>/<packet_id>/sha256 (the archive's hash when it was stored),
written in one rename (plasma.files), so a crash leaves a whole entry or none. Every write and every read
checks the hash and verifies the signature against the trusted keys with the edge's own check
(plasma.packet.verify); an entry that fails on read is removed and never served.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plasma import blobs, files, ids, packet
from plasma import log as plog
from plasma.server import settings
from plasma.signing import SigningKeyError, VerifyingKey, parse_trusted_keys

log = plog.get(__name__)

ROOT_VARIABLE = "PLASMA_PACKET_CACHE"
DEFAULT_ROOT = Path("~/.cache/plasma/packets")
# The keys a device's edge runtime trusts are the ones its cache trusts: offline it serves what the edge would.
TRUSTED_KEYS_VARIABLE = "PLASMA_EDGE_TRUSTED_KEYS"
_ARCHIVE = "packet.zip"
_HASH = "sha256"


def default_root(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(ROOT_VARIABLE, "") or DEFAULT_ROOT).expanduser()


@dataclass(frozen=True)
class CachedPacket:
    data: bytes  # the archive, byte for byte as the compiler signed it
    verified: packet.Packet


class PacketCache:
    def __init__(self, trusted_keys: Mapping[str, VerifyingKey], root: Path | None = None) -> None:
        self.trusted_keys = dict(trusted_keys)
        self.root = (root or default_root()).expanduser()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PacketCache:
        """Root from PLASMA_PACKET_CACHE (default ~/.cache/plasma/packets), trusted keys from
        PLASMA_EDGE_TRUSTED_KEYS (required: a cache that trusts no key could serve nothing)."""
        spec = env.get(TRUSTED_KEYS_VARIABLE, "")
        try:
            keys = parse_trusted_keys(spec, TRUSTED_KEYS_VARIABLE)
        except SigningKeyError as exc:
            raise settings.ConfigError(str(exc)) from exc
        if not keys:
            raise settings.ConfigError(f"{TRUSTED_KEYS_VARIABLE} is not set: the packet cache verifies every "
                                       "packet's signature and needs the public keys it may be signed with")
        return cls(keys, default_root(env))

    def get(self, packet_id: str) -> CachedPacket | None:
        """The packet, verified again now; None when it is not here or failed its checks (then it is removed)."""
        entry = self._entry(packet_id)
        try:
            data = (entry / _ARCHIVE).read_bytes()
            recorded = (entry / _HASH).read_text().strip()
        except FileNotFoundError:
            return None
        try:
            if blobs.sha256_hex(data) != recorded:
                raise packet.PacketTampered(f"the archive no longer hashes to the sha256 {recorded} stored with it")
            return self._checked(packet_id, data)
        except packet.PacketError as exc:
            log.warning("packet=%s removed from the cache %s: %s", packet_id, self.root, exc)
            self.remove(packet_id)
            return None

    def put(self, data: bytes) -> CachedPacket:
        """Verifies the packet (packet.PacketError says why it is refused) and stores it under its id, replacing
        an entry of that id."""
        verified = packet.verify(data, self.trusted_keys)
        packet_id = verified.manifest.packet_id
        entry = self._entry(packet_id)

        def fill(directory: Path) -> None:
            (directory / _ARCHIVE).write_bytes(data)
            (directory / _HASH).write_text(verified.sha256 + "\n")

        self.remove(packet_id)
        try:
            files.write_dir_atomic(entry, fill)
        except OSError:
            # Another process stored the same id first; keep its entry if it passes the checks.
            if (cached := self.get(packet_id)) is None:
                raise
            return cached
        return CachedPacket(data, verified)

    def remove(self, packet_id: str) -> None:
        shutil.rmtree(self._entry(packet_id), ignore_errors=True)

    def _checked(self, packet_id: str, data: bytes) -> CachedPacket:
        verified = packet.verify(data, self.trusted_keys)
        if verified.manifest.packet_id != packet_id:
            raise packet.PacketTampered(f"the entry of {packet_id} holds packet {verified.manifest.packet_id}")
        return CachedPacket(data, verified)

    def _entry(self, packet_id: str) -> Path:
        return self.root / ids.check_id("packet_id", packet_id)
