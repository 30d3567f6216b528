"""Where the registry's packets come from: the compiler's store, copied once into the registry's own, so edges
need to reach only the registry and keep getting packets while the compiler restarts or compiles."""

from __future__ import annotations

import grpc

from plasma import blobs, channels, packet
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.registry.v1 import registry_pb2
from plasma.server.errors import FailedPrecondition, NotFound
from services.registry.store import RegistryStore


def obtain(store: RegistryStore, compiler: compiler_pb2_grpc.CompilerServiceStub,
           packet_id: str) -> registry_pb2.PacketRef:
    """The registry's copy of `packet_id`, fetched from the compiler the first time and checked against the
    compiler's record (sha256) and the packet's own manifest (id, name, version)."""
    if store.has_packet(packet_id):
        return store.packet_ref(packet_id)
    try:
        record = compiler.GetPacket(compiler_pb2.GetPacketRequest(packet_id=packet_id),
                                    timeout=channels.UNARY_DEADLINE_S).packet
        data = blobs.receive(compiler.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=packet_id),
                                                     timeout=channels.UNARY_DEADLINE_S),
                             f"the compiler's DownloadPacket stream for {packet_id}", (packet.MEDIA_TYPE,))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"the compiler has no packet {packet_id!r}: {exc.details()}") from exc
        raise
    if blobs.sha256_hex(data) != record.sha256:
        raise FailedPrecondition(f"packet {packet_id} from the compiler does not match its recorded sha256")
    try:
        manifest, _ = packet.read(data)
    except packet.PacketError as exc:
        raise FailedPrecondition(f"packet {packet_id} from the compiler is not a packet: {exc}") from exc
    if manifest.packet_id != packet_id:
        raise FailedPrecondition(f"the compiler's packet {packet_id} says it is {manifest.packet_id}")
    ref = registry_pb2.PacketRef(packet_id=packet_id, name=manifest.name, version=manifest.version,
                                 sha256=record.sha256, size_bytes=len(data))
    store.save_packet(ref, data)
    return ref
