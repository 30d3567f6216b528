"""Client-side helpers shared by the edge tests."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from edge_runtime import errors
from plasma import blobs, packet, signing
from plasma.common.v1 import common_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from tests.compiler import policies

T = 30.0
TRUSTED = {policies.TEST_KEY.key_id: policies.TEST_KEY.public}


def trusted_env(key: signing.SigningKey = policies.TEST_KEY) -> dict[str, str]:
    return {"PLASMA_EDGE_TRUSTED_KEYS": key.public.base64}


def load_requests(
    data: bytes, header: common_pb2.BlobHeader | None = None, chunk_bytes: int = 4096
) -> Iterator[edge_pb2.LoadPacketRequest]:
    if header is None:
        yield from blobs.send(data, packet.MEDIA_TYPE, edge_pb2.LoadPacketRequest, chunk_bytes)
        return
    yield edge_pb2.LoadPacketRequest(header=header)
    for chunk in blobs.chunks(data, chunk_bytes):
        yield edge_pb2.LoadPacketRequest(chunk=chunk)


def load(
    stub: edge_pb2_grpc.EdgeRuntimeServiceStub, data: bytes, header: common_pb2.BlobHeader | None = None
) -> edge_pb2.PacketInfo:
    return stub.LoadPacket(load_requests(data, header), timeout=T).packet


def status(stub: edge_pb2_grpc.EdgeRuntimeServiceStub) -> edge_pb2.GetStatusResponse:
    return stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=T)


def refusal(error: grpc.RpcError) -> str:
    """The machine-readable reason a LoadPacket or Rollback was refused."""
    return dict(error.trailing_metadata() or ()).get(errors.REFUSAL_KEY, "")  # type: ignore[attr-defined]
