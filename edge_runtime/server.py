"""EdgeRuntimeService: loads verified packets and answers observations with actions, offline, on CPU."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping

import grpc
import numpy as np
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health

from edge_runtime.config import Config
from edge_runtime.session import PacketSession, Runtime
from edge_runtime.store import EdgeStore
from plasma import packet
from plasma.common.v1 import common_pb2
from plasma.core import blobs, grpc_server, settings, tensors
from plasma.core import logging as plog
from plasma.core.errors import InvalidArgument, PlasmaError, bad_input, translate_errors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc

log = plog.get(__name__)

SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["EdgeRuntimeService"].full_name


def _space_proto(space: packet.Space) -> common_pb2.Space:
    if space.kind == "discrete":
        return common_pb2.Space(kind=common_pb2.SPACE_KIND_DISCRETE, n=space.n)
    return common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=space.shape, low=space.low, high=space.high)


def packet_info(session: PacketSession) -> edge_pb2.PacketInfo:
    manifest = session.manifest
    load_time = timestamp_pb2.Timestamp()
    load_time.FromDatetime(session.loaded_at)
    return edge_pb2.PacketInfo(
        packet_id=manifest.packet_id, name=manifest.name, sha256=session.sha256, size_bytes=session.size_bytes,
        env_spec=common_pb2.EnvSpec(env_id=manifest.env_id, observation_space=_space_proto(manifest.observation_space),
                                    action_space=_space_proto(manifest.action_space)),
        load_time=load_time,
    )


def _chunks(requests: Iterator[edge_pb2.LoadPacketRequest]) -> Iterator[bytes]:
    for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise InvalidArgument("LoadPacket: only the first message may be a header; the rest must be chunks")
        yield request.chunk


class EdgeServicer(edge_pb2_grpc.EdgeRuntimeServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @translate_errors
    def LoadPacket(
        self, request_iterator: Iterator[edge_pb2.LoadPacketRequest], context: grpc.ServicerContext
    ) -> edge_pb2.LoadPacketResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("LoadPacket must start with a header message (sha256, size_bytes, media_type)")
        if first.header.media_type not in ("", packet.MEDIA_TYPE):
            raise InvalidArgument(f"LoadPacket takes {packet.MEDIA_TYPE}, got {first.header.media_type!r}")
        data = blobs.assemble(first.header, _chunks(request_iterator))  # BlobError -> DATA_LOSS
        with bad_input():  # PacketError: the bytes arrived intact but are not a packet we can serve
            session = self._runtime.load(data)
        log.info("loaded packet=%s name=%s sha256=%s size_bytes=%d", session.packet_id, session.manifest.name,
                 session.sha256, session.size_bytes)
        return edge_pb2.LoadPacketResponse(packet=packet_info(session))

    def _act(self, observation: common_pb2.Tensor) -> tuple[common_pb2.Tensor, str]:
        try:
            array = tensors.from_proto(observation, "observation")
        except tensors.TensorError:
            self._runtime.count_failure()
            raise
        action, packet_id = self._runtime.act(array)
        return tensors.to_proto(np.asarray(action)), packet_id

    @translate_errors
    def Act(self, request: edge_pb2.ActRequest, context: grpc.ServicerContext) -> edge_pb2.ActResponse:
        action, packet_id = self._act(request.observation)
        return edge_pb2.ActResponse(action=action, packet_id=packet_id)

    @translate_errors
    def Control(
        self, request_iterator: Iterator[edge_pb2.ControlRequest], context: grpc.ServicerContext
    ) -> Iterator[edge_pb2.ControlResponse]:
        for request in request_iterator:
            try:
                action, packet_id = self._act(request.observation)
            except tensors.TensorError as exc:
                raise InvalidArgument(f"sequence {request.sequence}: {exc}") from exc
            except PlasmaError as exc:  # the stream ends here; say which message ended it
                raise type(exc)(f"sequence {request.sequence}: {exc}") from exc
            yield edge_pb2.ControlResponse(sequence=request.sequence, action=action, packet_id=packet_id)

    @translate_errors
    def GetStatus(
        self, request: edge_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> edge_pb2.GetStatusResponse:
        status = self._runtime.status()
        return edge_pb2.GetStatusResponse(
            serving=status.session is not None,
            packet=packet_info(status.session) if status.session is not None else None,
            requests_served=status.requests_served,
            requests_failed=status.requests_failed,
            inference_latency=edge_pb2.LatencySummary(p50_ms=status.latency_p50_ms, p99_ms=status.latency_p99_ms,
                                                      count=status.latency_count),
        )


def create_server(config: Config) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds and binds the server (not started), already serving the stored packet if there is one."""
    runtime = Runtime(EdgeStore(config.store_dir), config.ort_intra_threads, config.ort_inter_threads,
                      config.max_batch)
    restored = runtime.restore()
    if restored is not None:
        log.info("serving stored packet=%s sha256=%s", restored.packet_id, restored.sha256)
    server = grpc_server.build_server(config.workers, config.max_concurrent_rpcs)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    edge_pb2_grpc.add_EdgeRuntimeServiceServicer_to_server(EdgeServicer(runtime), server)
    port = grpc_server.bind(server, config.address)
    return server, port, health_servicer


def serve(config: Config) -> None:
    server, port, health_servicer = create_server(config)
    server.start()
    # SERVING without a packet too: the runtime must accept LoadPacket; GetStatus.serving says if it can act.
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("edge serving port=%d store=%s ort_threads=%d/%d", port, config.store_dir, config.ort_intra_threads,
             config.ort_inter_threads)
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    parser = argparse.ArgumentParser(description="Plasma edge runtime")
    parser.add_argument("--address", help="host:port to listen on (PLASMA_EDGE_ADDRESS)")
    parser.add_argument("--store", help="store directory (PLASMA_EDGE_STORE)")
    args = parser.parse_args(argv)
    overrides = {"PLASMA_EDGE_ADDRESS": args.address, "PLASMA_EDGE_STORE": args.store}
    plog.configure()
    try:
        config = Config.from_env({**env, **{k: v for k, v in overrides.items() if v}})
    except settings.ConfigError as exc:
        parser.error(str(exc))
    serve(config)


if __name__ == "__main__":
    main()
