"""Real compiler and edge services on port 0 around one signed packet, for the SDK's cache, offline and asyncio
tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import blobs, packet
from plasma.compiler.v1 import compiler_pb2
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from services.compiler.store import PacketStore
from tests.conftest import running
from tests.support import policies
from tests.support.edge import TRUSTED


@pytest.fixture(scope="session")
def signed_packet() -> bytes:
    """A CartPole-like int8 packet signed by the tests' key (tests.support.edge.TRUSTED)."""
    return policies.make_packet("discrete", seed=0, version=1, packet_id="pkt-5d0c00000001")[0]


@pytest.fixture(scope="session")
def compiler(tmp_path_factory: pytest.TempPathFactory, signed_packet: bytes) -> Iterator[str]:
    """A real CompilerService whose store holds `signed_packet`, as if it had compiled it."""
    root = tmp_path_factory.mktemp("compiler")
    manifest, _ = packet.read(signed_packet)
    PacketStore(root).save(compiler_pb2.Packet(
        packet_id=manifest.packet_id, name=manifest.name, version=manifest.version,
        sha256=blobs.sha256_hex(signed_packet), size_bytes=len(signed_packet),
        create_time=timestamp_pb2.Timestamp(seconds=1_700_000_000)), signed_packet)
    config = CompilerConfig(address="127.0.0.1:0", store_dir=root)
    with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as address:
        yield address


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[str]:
    """A real EdgeRuntimeService trusting the tests' key, serving nothing yet."""
    config = EdgeConfig(address="127.0.0.1:0", store_dir=tmp_path / "edge", trusted_keys=TRUSTED)
    with running(lambda: edge_server.create_server(config), edge_server.SERVICE_NAME) as address:
        yield address
