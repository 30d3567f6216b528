"""Durable storage of compiled packets.

Layout:
  <root>/packets/<packet_id>/packet.zip   the packet (plasma.packet format)
  <root>/packets/<packet_id>/packet.json  its Packet message (JSON)
  <root>/signing/dev-ed25519.pem          the generated development signing key, when none is configured
A packet's directory appears in one rename, so a crash never leaves half a packet; packets are immutable.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import json_format

from plasma import blobs, files, ids
from plasma.compiler.v1 import compiler_pb2
from plasma.server.errors import DataLoss, NotFound

_PACKET_ID = re.compile(r"pkt-[0-9a-f]{12}")


class PacketStore:
    def __init__(self, root: Path) -> None:
        self.packets_dir = root / "packets"
        self.packets_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(self.packets_dir)

    def save(self, record: compiler_pb2.Packet, data: bytes) -> None:
        def fill(directory: Path) -> None:
            (directory / "packet.zip").write_bytes(data)
            (directory / "packet.json").write_text(json_format.MessageToJson(record))

        files.write_dir_atomic(self.packets_dir / ids.check_id("packet_id", record.packet_id), fill)

    def get(self, packet_id: str) -> compiler_pb2.Packet:
        return json_format.Parse((self._directory(packet_id) / "packet.json").read_text(), compiler_pb2.Packet())

    def read(self, packet_id: str) -> tuple[compiler_pb2.Packet, bytes]:
        """The packet's record and bytes, checked against the sha256 recorded when it was stored."""
        record = self.get(packet_id)
        data = (self._directory(packet_id) / "packet.zip").read_bytes()
        if blobs.sha256_hex(data) != record.sha256:
            raise DataLoss(f"packet {packet_id!r} on disk no longer matches its sha256 {record.sha256}")
        return record, data

    def list_packets(self) -> list[compiler_pb2.Packet]:
        packets = [self.get(p.name) for p in self.packets_dir.iterdir() if _PACKET_ID.fullmatch(p.name)]
        return sorted(packets, key=lambda p: p.create_time.ToNanoseconds())

    def next_version(self, name: str) -> int:
        """1 + the highest version stored under this name: versions increase monotonically per lineage."""
        return 1 + max((p.version for p in self.list_packets() if p.name == name), default=0)

    def _directory(self, packet_id: str) -> Path:
        # The servicer checks ids where requests come in; this second check keeps any other caller's id from
        # reaching the filesystem. Valid ids outside the compiler's own pattern name no packet.
        directory = self.packets_dir / ids.check_id("packet_id", packet_id)
        if not _PACKET_ID.fullmatch(packet_id) or not directory.is_dir():
            raise NotFound(f"packet {packet_id!r} does not exist; list packets with ListPackets")
        return directory
