"""Durable registry state: the packets it serves and one JSON document of channels, rollouts and decisions.

Layout:
  <root>/packets/<packet_id>/packet.zip   a packet fetched from the compiler, as the compiler stored it
  <root>/packets/<packet_id>/packet.json  its PacketRef (JSON)
  <root>/state.json                       channels, rollouts, decisions and figures, replaced atomically
A crash leaves the previous state.json or the new one (plasma.files), never a mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from plasma import blobs, files, ids
from plasma.registry.v1 import registry_pb2
from plasma.server.errors import DataLoss, NotFound
from services.registry.figures import Tally


@dataclass
class State:
    channels: dict[str, registry_pb2.Channel] = field(default_factory=dict)
    rollouts: dict[str, registry_pb2.Rollout] = field(default_factory=dict)
    decisions: list[registry_pb2.Decision] = field(default_factory=list)
    # (channel, packet_id) -> figures reported for that packet on that channel.
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)


def _dump(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class RegistryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.packets_dir = root / "packets"
        self.packets_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(self.packets_dir)
        files.remove_stale_temporaries(root)
        self._state_file = root / "state.json"

    # Packets

    def has_packet(self, packet_id: str) -> bool:
        return (self.packets_dir / ids.check_id("packet_id", packet_id) / "packet.json").is_file()

    def save_packet(self, ref: registry_pb2.PacketRef, data: bytes) -> None:
        def fill(directory: Path) -> None:
            (directory / "packet.zip").write_bytes(data)
            (directory / "packet.json").write_text(json_format.MessageToJson(ref))

        files.write_dir_atomic(self.packets_dir / ids.check_id("packet_id", ref.packet_id), fill)

    def packet_ref(self, packet_id: str) -> registry_pb2.PacketRef:
        directory = self.packets_dir / ids.check_id("packet_id", packet_id)
        if not (directory / "packet.json").is_file():
            raise NotFound(f"the registry holds no packet {packet_id!r}: publish it or start a rollout of it first")
        return json_format.Parse((directory / "packet.json").read_text(), registry_pb2.PacketRef())

    def read_packet(self, packet_id: str) -> bytes:
        ref = self.packet_ref(packet_id)
        data = (self.packets_dir / packet_id / "packet.zip").read_bytes()
        if blobs.sha256_hex(data) != ref.sha256:
            raise DataLoss(f"packet {packet_id!r} on disk no longer matches its sha256 {ref.sha256}")
        return data

    # State

    def load(self) -> State:
        if not self._state_file.is_file():
            return State()
        raw = json.loads(self._state_file.read_text())
        return State(
            channels={name: json_format.ParseDict(c, registry_pb2.Channel()) for name, c in raw["channels"].items()},
            rollouts={rid: json_format.ParseDict(r, registry_pb2.Rollout()) for rid, r in raw["rollouts"].items()},
            decisions=[json_format.ParseDict(d, registry_pb2.Decision()) for d in raw["decisions"]],
            tallies={(t["channel"], t["packet_id"]): Tally.from_json(t["figures"]) for t in raw["tallies"]},
        )

    def save(self, state: State) -> None:
        document = {
            "channels": {name: _dump(c) for name, c in state.channels.items()},
            "rollouts": {rid: _dump(r) for rid, r in state.rollouts.items()},
            "decisions": [_dump(d) for d in state.decisions],
            "tallies": [{"channel": c, "packet_id": p, "figures": t.to_json()} for (c, p), t in state.tallies.items()],
        }
        files.write_bytes_atomic(self._state_file, json.dumps(document, indent=1).encode())
