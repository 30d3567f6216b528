"""EdgeRuntimeService: installs signed packets and answers observations with actions, offline, on CPU."""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health

from edge_runtime import errors, follower, self_test
from edge_runtime.config import Config
from edge_runtime.experience import MEDIA_TYPE as EXPERIENCE_MEDIA_TYPE
from edge_runtime.experience import ExperienceLog
from edge_runtime.metrics import Metrics, collector
from edge_runtime.runtime import Runtime
from edge_runtime.session import ServedPacket
from edge_runtime.store import EdgeStore, Entry, StoreError
from plasma import blobs, ids, packet, tensors
from plasma import log as plog
from plasma.common.v1 import common_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server import grpc_server, service_main
from plasma.server.errors import FailedPrecondition, InvalidArgument, PlasmaError, ResourceExhausted, translate_errors
from plasma.server.observability import Observability

log = plog.get(__name__)

SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["EdgeRuntimeService"].full_name
# Observations are small and packets arrive in 64 KiB chunks: nothing legitimate comes near this.
MAX_RECEIVE_BYTES = 4 * 1024 * 1024
_INT64 = np.dtype("<i8")


def _timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _kind(manifest_kind: str, adaptable: bool) -> common_pb2.PacketKind:
    """The manifest says model or adapter; a model with adapter slots is the ADAPTABLE kind."""
    if manifest_kind == packet.KIND_ADAPTER:
        return common_pb2.PACKET_KIND_ADAPTER
    if manifest_kind == packet.KIND_MODEL:
        return common_pb2.PACKET_KIND_ADAPTABLE if adaptable else common_pb2.PACKET_KIND_MERGED
    return common_pb2.PACKET_KIND_UNSPECIFIED


def packet_info(served: ServedPacket) -> edge_pb2.PacketInfo:
    manifest = served.manifest
    base = manifest.base
    kind = _kind(manifest.kind, adaptable=bool(manifest.adapter_slots))
    return edge_pb2.PacketInfo(
        packet_id=manifest.packet_id, name=manifest.name, sha256=served.sha256, size_bytes=served.size_bytes,
        env_spec=common_pb2.EnvSpec(env_id=manifest.env_id, observation_space=manifest.observation_space.to_proto(),
                                    action_space=manifest.action_space.to_proto()),
        load_time=_timestamp(served.loaded_at), version=manifest.version, kind=kind,
        signing_key_id=served.key_id, base_packet_id=base.packet_id if base else "",
        base_version=base.version if base else 0, self_test=_self_test_report(served), precision=served.precision,
    )


def _self_test_report(served: ServedPacket) -> edge_pb2.SelfTestReport:
    report = served.self_test
    if report is None:
        return edge_pb2.SelfTestReport(ran=False, cpu_features=self_test.cpu_features())
    return edge_pb2.SelfTestReport(
        ran=True, passed=report.passed, agreement=report.agreement.share, min_agreement=report.min_agreement,
        observations=report.agreement.states, near_ties=report.agreement.near_ties,
        max_abs_diff=report.agreement.max_abs_diff, max_abs_diff_from_compiler=report.max_abs_diff_from_compiler,
        serving_fallback=served.serving_fallback, cpu_features=self_test.cpu_features(),
        allowed_max_abs_diff=report.allowed_output_error)


def entry_info(entry: Entry | None) -> edge_pb2.PacketInfo | None:
    """What the store records about a packet that is installed but not served (no session, no load time)."""
    if entry is None:
        return None
    return edge_pb2.PacketInfo(packet_id=entry.packet_id, name=entry.name, sha256=entry.sha256,
                               version=entry.version, kind=_kind(entry.kind, adaptable=entry.adaptable))


class ActionEncoder:
    """Actions -> Tensor messages. A discrete packet answering one observation has only n possible replies;
    they are built once per packet instead of once per request."""

    def __init__(self) -> None:
        self._cache: tuple[ServedPacket, list[common_pb2.Tensor]] | None = None

    def encode(self, actions: np.ndarray, single: bool, served: ServedPacket) -> common_pb2.Tensor:
        if single and served.discrete:
            cache = self._cache
            if cache is None or cache[0] is not served:
                n = served.manifest.action_space.n
                replies = [common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_INT64, data=np.int64(i).astype(_INT64)
                                             .tobytes()) for i in range(min(n, 1024))]
                cache = self._cache = (served, replies)
            index = int(actions[0])
            if 0 <= index < len(cache[1]):
                return cache[1][index]
        return tensors.to_proto(actions[0] if single else actions)


class EdgeServicer(edge_pb2_grpc.EdgeRuntimeServiceServicer):
    def __init__(self, runtime: Runtime, max_control_streams: int, experience: ExperienceLog | None = None) -> None:
        self._runtime = runtime
        self._experience = experience
        self._streams = threading.BoundedSemaphore(max_control_streams)
        self._max_streams = max_control_streams
        self._encoder = ActionEncoder()
        self._started = _timestamp(datetime.datetime.now(datetime.UTC))

    @staticmethod
    def _refusal(context: grpc.ServicerContext, exc: errors.Refused) -> None:
        context.set_trailing_metadata(((errors.REFUSAL_KEY, exc.reason),))

    @translate_errors
    def LoadPacket(
        self, request_iterator: Iterator[edge_pb2.LoadPacketRequest], context: grpc.ServicerContext
    ) -> edge_pb2.LoadPacketResponse:
        # A malformed header is INVALID_ARGUMENT; bytes that do not match it, DATA_LOSS.
        data = blobs.receive(request_iterator, "LoadPacket", (packet.MEDIA_TYPE,), from_client=True)
        try:
            served, previous = self._runtime.load(data)
        except errors.Refused as exc:
            self._refusal(context, exc)
            log.warning("refused packet sha256=%s reason=%s: %s", blobs.sha256_hex(data), exc.reason, exc)
            raise
        log.info("loaded packet=%s name=%s version=%d kind=%s key=%s sha256=%s previous=%s", served.packet_id,
                 served.manifest.name, served.version, served.manifest.kind, served.key_id, served.sha256,
                 previous.packet_id if previous else "none")
        return edge_pb2.LoadPacketResponse(packet=packet_info(served), previous=entry_info(previous))

    @translate_errors
    def Rollback(self, request: edge_pb2.RollbackRequest, context: grpc.ServicerContext) -> edge_pb2.RollbackResponse:
        ids.check_id("packet_id", request.packet_id, optional=True)
        try:
            served, rolled_back = self._runtime.rollback(request.packet_id)
        except errors.Refused as exc:
            self._refusal(context, exc)
            raise
        log.info("rolled back from packet=%s v%d to packet=%s v%d", rolled_back.packet_id, rolled_back.version,
                 served.packet_id, served.version)
        return edge_pb2.RollbackResponse(packet=packet_info(served), rolled_back=entry_info(rolled_back))

    @translate_errors
    def Act(self, request: edge_pb2.ActRequest, context: grpc.ServicerContext) -> edge_pb2.ActResponse:
        actions, single, served = self._runtime.act_tensor(request.observation)
        return edge_pb2.ActResponse(action=self._encoder.encode(actions, single, served), packet_id=served.packet_id,
                                    packet_version=served.version)

    @translate_errors
    def Control(
        self, request_iterator: Iterator[edge_pb2.ControlRequest], context: grpc.ServicerContext
    ) -> Iterator[edge_pb2.ControlResponse]:
        if not self._streams.acquire(blocking=False):
            raise ResourceExhausted(
                f"{self._max_streams} Control streams are already open (PLASMA_EDGE_MAX_CONTROL_STREAMS); "
                "close one, or use Act")
        metrics = self._runtime.metrics
        metrics.control_streams(+1)
        act, encode = self._runtime.act_tensor, self._encoder.encode
        recorder = self._experience.recorder() if self._experience is not None else None
        try:
            for request in request_iterator:
                try:
                    actions, single, served = act(request.observation)
                except PlasmaError as exc:  # the stream ends here; say which message ended it
                    raise type(exc)(f"sequence {request.sequence}: {exc}") from exc
                if recorder is not None:
                    recorder.observe(request, actions)
                yield edge_pb2.ControlResponse(sequence=request.sequence, action=encode(actions, single, served),
                                               packet_id=served.packet_id, packet_version=served.version)
        finally:
            metrics.control_streams(-1)
            self._streams.release()

    @translate_errors
    def ExportExperience(
        self, request: edge_pb2.ExportExperienceRequest, context: grpc.ServicerContext
    ) -> Iterator[edge_pb2.ExportExperienceResponse]:
        if self._experience is None:
            raise FailedPrecondition("this runtime records no experience: start it with PLASMA_EDGE_EXPERIENCE_DIR set")
        if request.from_sequence < 0:
            raise InvalidArgument(f"from_sequence must be at least 0, got {request.from_sequence}")
        data = self._experience.export(request.from_sequence)
        if data is None:
            raise FailedPrecondition(
                f"no experience recorded from sequence {request.from_sequence} on (the next transition recorded gets "
                f"{self._experience.next_sequence}); a device records it by sending rewards on its Control stream")
        yield from blobs.send(data, EXPERIENCE_MEDIA_TYPE, edge_pb2.ExportExperienceResponse)

    @translate_errors
    def GetStatus(
        self, request: edge_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> edge_pb2.GetStatusResponse:
        status = self._runtime.status()
        p50, p90, p99 = status.latency_ms
        return edge_pb2.GetStatusResponse(
            serving=status.current is not None,
            packet=packet_info(status.current) if status.current is not None else None,
            previous=entry_info(status.previous),
            requests_served=status.requests_served,
            requests_failed=status.requests_failed,
            observations_served=status.observations_served,
            packets_loaded=status.packets_loaded,
            packets_refused=status.packets_refused,
            inference_latency=edge_pb2.LatencySummary(p50_ms=p50, p90_ms=p90, p99_ms=p99, count=status.latency_count),
            trusted_key_ids=sorted(self._runtime.trusted_keys),
            start_time=self._started,
        )


@dataclass
class Edge:
    """A built (not started) runtime: its gRPC server and everything a test or `serve` needs to reach."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    runtime: Runtime
    metrics_port: int | None
    stop_metrics: Callable[[], None]
    experience: ExperienceLog | None = None


def build(config: Config, observability: Observability | None = None) -> Edge:
    """Opens the store, serves the stored packet if it still verifies, binds gRPC (and /metrics if configured).
    `observability` defaults to metrics at config.metrics_address and no tracing."""
    observability = observability or Observability("edge", config.metrics_address)
    metrics = Metrics()
    try:
        store = EdgeStore(config.store_dir)
    except OSError as exc:
        raise StoreError(f"store {config.store_dir} cannot be opened: {exc}") from exc
    runtime = Runtime(store, config.trusted_keys, config.ort_intra_threads, config.ort_inter_threads,
                      config.max_batch, metrics)
    if not config.trusted_keys:
        log.warning("no trusted signing keys (PLASMA_EDGE_TRUSTED_KEYS): every packet will be refused")
    restored = runtime.restore()
    if restored is not None:
        log.info("serving stored packet=%s name=%s version=%d sha256=%s", restored.packet_id, restored.manifest.name,
                 restored.version, restored.sha256)
    server = grpc_server.build_server(config.workers, config.max_concurrent_rpcs, MAX_RECEIVE_BYTES, config.security,
                                      observability)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    experience = (ExperienceLog(config.experience_dir, config.experience_max_bytes)
                  if config.experience_dir is not None else None)
    edge_pb2_grpc.add_EdgeRuntimeServiceServicer_to_server(
        EdgeServicer(runtime, config.max_control_streams, experience), server)
    port = grpc_server.bind(server, config.address, config.security)
    observability.register(collector(metrics))
    return Edge(server, port, health_servicer, runtime, observability.start(), observability.stop, experience)


def create_server(config: Config) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds and binds the server (not started), already serving the stored packet if there is one."""
    edge = build(config)
    return edge.server, edge.port, edge.health


def serve(config: Config, observability: Observability) -> None:
    edge = build(config, observability)
    edge.server.start()
    # SERVING without a packet too: the runtime must accept LoadPacket; GetStatus.serving says if it can act.
    grpc_server.set_serving(edge.health, [SERVICE_NAME], True)
    log.info("edge serving port=%d security=%s store=%s trusted_keys=%s ort_threads=%d/%d workers=%d max_rpcs=%d "
             "max_streams=%d metrics_port=%s", edge.port, config.security.describe(), config.store_dir,
             edge.runtime.describe_trust(),
             config.ort_intra_threads, config.ort_inter_threads, config.workers, config.max_concurrent_rpcs,
             config.max_control_streams, edge.metrics_port)
    if edge.experience is not None:
        log.info("recording experience dir=%s max_bytes=%d next_sequence=%d", config.experience_dir,
                 config.experience_max_bytes, edge.experience.next_sequence)
    following = follower.start(edge.runtime, config.follow)
    try:
        grpc_server.run_until_signal(edge.server, config.grace_seconds, edge.health)
    finally:
        if following is not None:
            following.stop()
        edge.stop_metrics()
        if edge.experience is not None:
            edge.experience.close()


_FLAGS = (
    service_main.Flag("--address", "PLASMA_EDGE_ADDRESS", "host:port to listen on"),
    service_main.Flag("--store", "PLASMA_EDGE_STORE", "store directory"),
    service_main.Flag("--trusted-keys", "PLASMA_EDGE_TRUSTED_KEYS", "comma-separated key files or base64 public keys"),
    service_main.Flag("--metrics-address", "PLASMA_EDGE_METRICS_ADDRESS", "host:port for Prometheus /metrics"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma edge runtime", _FLAGS, Config.from_env, serve, argv, env, service="edge")


if __name__ == "__main__":
    main()
