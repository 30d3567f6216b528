"""RegistryService: channels of packets that edges follow, and staged rollouts with automatic rollback."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from plasma import blobs, channels, ids, packet
from plasma import log as plog
from plasma.compiler.v1 import compiler_pb2_grpc
from plasma.registry.v1 import registry_pb2, registry_pb2_grpc
from plasma.server import grpc_server, service_main
from plasma.server.errors import InvalidArgument, translate_errors
from plasma.server.observability import Observability
from services.registry import decide, source
from services.registry.config import Config
from services.registry.fleet import Fleet
from services.registry.store import RegistryStore

log = plog.get(__name__)

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
# A latency histogram with more buckets than this is no runtime's.
MAX_BUCKETS = 64


def check_report(request: registry_pb2.ReportRequest) -> None:
    ids.check_id("channel", request.channel)
    ids.check_id("edge_id", request.edge_id)
    ids.check_id("packet_id", request.packet_id, optional=True)
    ids.check_id("serving_packet_id", request.serving_packet_id, optional=True)
    latency = request.latency
    has_figures = request.requests or request.failed_requests or request.episodes or any(latency.counts)
    if has_figures and not request.packet_id:
        raise InvalidArgument("packet_id is required with figures: the packet they are about")
    if request.failed_requests > request.requests:
        raise InvalidArgument(f"failed_requests={request.failed_requests} exceeds requests={request.requests}")
    if request.episode_return_sum != request.episode_return_sum or abs(request.episode_return_sum) == float("inf"):
        raise InvalidArgument("episode_return_sum must be a finite number")
    bounds = list(latency.upper_bounds_seconds)
    if latency.counts and (len(latency.counts) != len(bounds) + 1 or len(bounds) > MAX_BUCKETS
                           or any(b <= a for a, b in itertools.pairwise(bounds)) or bounds[:1] < [0.0]):
        raise InvalidArgument(f"latency: expected 1..{MAX_BUCKETS} increasing upper bounds (seconds, > 0) and one "
                              f"count more than bounds, got {len(bounds)} bounds and {len(latency.counts)} counts")


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, fleet: Fleet, store: RegistryStore, compiler: compiler_pb2_grpc.CompilerServiceStub) -> None:
        self._fleet = fleet
        self._store = store
        self._compiler = compiler
        # One copy from the compiler at a time: two requests for one packet must not both write it.
        self._fetch_lock = threading.Lock()

    def _obtain(self, packet_id: str) -> registry_pb2.PacketRef:
        ids.check_id("packet_id", packet_id)
        with self._fetch_lock:
            return source.obtain(self._store, self._compiler, packet_id)

    @translate_errors
    def Publish(
        self, request: registry_pb2.PublishRequest, context: grpc.ServicerContext
    ) -> registry_pb2.PublishResponse:
        ids.check_id("channel", request.channel)
        ref = self._obtain(request.packet_id)
        return registry_pb2.PublishResponse(channel=self._fleet.publish(request.channel, ref, request.reason[:200]))

    @translate_errors
    def GetChannel(
        self, request: registry_pb2.GetChannelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetChannelResponse:
        ids.check_id("channel", request.channel)
        return registry_pb2.GetChannelResponse(channel=self._fleet.channel(request.channel))

    @translate_errors
    def ListChannels(
        self, request: registry_pb2.ListChannelsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListChannelsResponse:
        return registry_pb2.ListChannelsResponse(channels=self._fleet.channels())

    @translate_errors
    def WatchChannel(
        self, request: registry_pb2.WatchChannelRequest, context: grpc.ServicerContext
    ) -> Iterator[registry_pb2.WatchChannelResponse]:
        ids.check_id("channel", request.channel)
        ids.check_id("edge_id", request.edge_id)
        context.add_callback(self._fleet.wake)  # a client that goes away ends its stream at once
        for assignment in self._fleet.watch(request.channel, request.edge_id, context.is_active):
            log.info("channel=%s edge=%s assigned packet=%s (%s)", request.channel, request.edge_id,
                     assignment.packet.packet_id, assignment.reason)
            yield assignment

    @translate_errors
    def FetchPacket(
        self, request: registry_pb2.FetchPacketRequest, context: grpc.ServicerContext
    ) -> Iterator[registry_pb2.FetchPacketResponse]:
        ids.check_id("packet_id", request.packet_id)
        yield from blobs.send(self._store.read_packet(request.packet_id), packet.MEDIA_TYPE,
                              registry_pb2.FetchPacketResponse)

    @translate_errors
    def Report(self, request: registry_pb2.ReportRequest, context: grpc.ServicerContext) -> registry_pb2.ReportResponse:
        check_report(request)
        self._fleet.report(request)
        return registry_pb2.ReportResponse()

    @translate_errors
    def StartRollout(
        self, request: registry_pb2.StartRolloutRequest, context: grpc.ServicerContext
    ) -> registry_pb2.StartRolloutResponse:
        ids.check_id("channel", request.channel)
        if not 0.0 <= request.canary_fraction <= 1.0:
            raise InvalidArgument(f"canary_fraction={request.canary_fraction} must be in (0, 1] (0 for the default "
                                  f"{DEFAULT_CANARY_FRACTION})")
        thresholds = decide.resolve(request.thresholds)
        self._fleet.channel(request.channel)  # NOT_FOUND before fetching anything
        ref = self._obtain(request.packet_id)
        rollout = self._fleet.start_rollout(request.channel, ref, request.canary_fraction or DEFAULT_CANARY_FRACTION,
                                            request.canary_edges, thresholds)
        return registry_pb2.StartRolloutResponse(rollout=rollout)

    @translate_errors
    def GetRollout(
        self, request: registry_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetRolloutResponse:
        ids.check_id("rollout_id", request.rollout_id)
        return registry_pb2.GetRolloutResponse(rollout=self._fleet.rollout(request.rollout_id))

    @translate_errors
    def AbortRollout(
        self, request: registry_pb2.AbortRolloutRequest, context: grpc.ServicerContext
    ) -> registry_pb2.AbortRolloutResponse:
        ids.check_id("rollout_id", request.rollout_id)
        return registry_pb2.AbortRolloutResponse(rollout=self._fleet.abort(request.rollout_id, request.reason[:200]))

    @translate_errors
    def ListDecisions(
        self, request: registry_pb2.ListDecisionsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListDecisionsResponse:
        ids.check_id("channel", request.channel, optional=True)
        ids.check_id("rollout_id", request.rollout_id, optional=True)
        return registry_pb2.ListDecisionsResponse(decisions=self._fleet.decisions(request.channel, request.rollout_id))


DEFAULT_CANARY_FRACTION = 0.1


@dataclass
class Registry:
    """A built (not started) registry: its server, its state, and the thread that judges rollouts."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    fleet: Fleet
    evaluate_seconds: float

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._evaluator = threading.Thread(target=self._evaluate, name="rollout-verdicts", daemon=True)

    def start(self) -> None:
        self.server.start()
        self._evaluator.start()
        grpc_server.set_serving(self.health, [SERVICE_NAME], True)

    def stop(self, grace_seconds: float) -> None:
        """Ends the watch streams (edges reconnect), drains the rest, saves the state."""
        self.close()
        self.server.stop(grace_seconds).wait()

    def close(self) -> None:
        self._stop.set()
        self.fleet.close()

    def _evaluate(self) -> None:
        while not self._stop.wait(self.evaluate_seconds):
            try:
                self.fleet.evaluate()
            except Exception:  # a bad tick must not end every later verdict
                log.exception("rollout evaluation failed")


def build(config: Config, compiler: grpc.Channel | None = None,
          observability: Observability | None = None) -> Registry:
    """Opens the store and binds the server (not started); `compiler` defaults to a channel to
    config.compiler_address."""
    observability = observability or Observability("registry")
    store = RegistryStore(config.store_dir)
    fleet = Fleet(store)
    server = grpc_server.build_server(config.workers, security=config.security, observability=observability)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    to_compiler = observability.channel(compiler or channels.channel(config.compiler_address, config.client_security))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(fleet, store, compiler_pb2_grpc.CompilerServiceStub(to_compiler)), server)
    port = grpc_server.bind(server, config.address, config.security)
    return Registry(server, port, health_servicer, fleet, config.evaluate_seconds)


def serve(config: Config, observability: Observability) -> None:
    registry = build(config, observability=observability)
    registry.start()
    log.info("registry serving port=%d compiler=%s store=%s security=%s", registry.port, config.compiler_address,
             config.store_dir, config.security.describe())
    grpc_server.run_until_signal(registry.server, config.grace_seconds, registry.health, on_signal=registry.close)


_FLAGS = (
    service_main.Flag("--address", "PLASMA_REGISTRY_ADDRESS", "host:port to listen on"),
    service_main.Flag("--compiler", "PLASMA_COMPILER_TARGET", "compiler host:port"),
    service_main.Flag("--store", "PLASMA_REGISTRY_STORE", "store directory"),
    service_main.Flag("--metrics-address", "PLASMA_REGISTRY_METRICS_ADDRESS", "host:port for Prometheus /metrics"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma packet registry", _FLAGS, Config.from_env, serve, argv, env, service="registry")


if __name__ == "__main__":
    main()
