"""Follows a registry channel: installs what the registry assigns this edge, and reports how it serves.

Off unless PLASMA_EDGE_REGISTRY_TARGET and PLASMA_EDGE_CHANNEL are set. It installs through the runtime's own
path, the one LoadPacket takes (signature, anti-rollback, self-test, atomic swap), and goes back to an older
packet only through Rollback, which requires it to be the kept previous one: the registry can choose what an
edge serves, never make it serve something the edge would refuse. docs/fleet.md.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from edge_runtime import errors
from edge_runtime.metrics import BUCKETS_S, Snapshot
from plasma import blobs, channels, ids, packet
from plasma import log as plog
from plasma.registry.v1 import registry_pb2, registry_pb2_grpc
from plasma.server import settings

if TYPE_CHECKING:
    from edge_runtime.runtime import Runtime

log = plog.get(__name__)

# A watch stream is opened again after this long even when healthy, so no call is without a deadline.
WATCH_DEADLINE_S = 3600.0
# Between reconnects of a broken watch stream: doubling from the first to the last.
BACKOFF_S = (0.5, 10.0)


@dataclass(frozen=True)
class FollowConfig:
    # host:port of the registry (PLASMA_EDGE_REGISTRY_TARGET).
    registry_target: str
    # The channel this edge follows (PLASMA_EDGE_CHANNEL).
    channel: str
    # This edge's id, unique in the fleet (PLASMA_EDGE_ID; default: the host name).
    edge_id: str
    # Seconds between two reports of the edge's figures (PLASMA_EDGE_REPORT_SECONDS).
    report_seconds: float = 5.0
    # How to reach the registry: PLASMA_TLS_* as every client (plasma.channels.ClientSecurity); None: plaintext.
    security: channels.ClientSecurity | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FollowConfig | None:
        target, channel = env.get("PLASMA_EDGE_REGISTRY_TARGET", ""), env.get("PLASMA_EDGE_CHANNEL", "")
        if not target and not channel:
            return None
        if not target or not channel:
            missing = "PLASMA_EDGE_CHANNEL" if target else "PLASMA_EDGE_REGISTRY_TARGET"
            raise settings.ConfigError(f"{missing} is not set: following a channel needs both "
                                       "PLASMA_EDGE_REGISTRY_TARGET and PLASMA_EDGE_CHANNEL")
        edge_id = env.get("PLASMA_EDGE_ID", "") or socket.gethostname()
        for variable, value in (("PLASMA_EDGE_CHANNEL", channel), ("PLASMA_EDGE_ID", edge_id)):
            if not ids.is_valid_id(value):
                raise settings.ConfigError(f"{variable}={value!r} is not valid: expected {ids.ID_RULE}")
        report_seconds = settings.seconds(env, "PLASMA_EDGE_REPORT_SECONDS", cls.report_seconds)
        if report_seconds <= 0:
            raise settings.ConfigError(f"PLASMA_EDGE_REPORT_SECONDS={report_seconds} is not valid: expected > 0")
        return cls(registry_target=settings.address(env, "PLASMA_EDGE_REGISTRY_TARGET", target), channel=channel,
                   edge_id=edge_id, report_seconds=report_seconds, security=channels.ClientSecurity.from_env(env))


class Follower:
    def __init__(self, runtime: Runtime, config: FollowConfig) -> None:
        self._runtime = runtime
        self._config = config
        self._channel = channels.channel(config.registry_target, config.security)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._stop = threading.Event()
        self._call: grpc.Future | None = None
        # Figures up to the last report that got through; a failed report's figures go with the next one.
        self._reported = runtime.metrics.snapshot()
        self._report_lock = threading.Lock()
        # The last refused install, reported until another packet is assigned; never tried again meanwhile.
        self._install_error: registry_pb2.InstallError | None = None
        self._threads = [threading.Thread(target=self._follow, name="follow-channel", daemon=True),
                         threading.Thread(target=self._report_loop, name="report-figures", daemon=True)]

    def start(self) -> None:
        log.info("following channel=%s registry=%s edge_id=%s report_seconds=%g", self._config.channel,
                 self._config.registry_target, self._config.edge_id, self._config.report_seconds)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        for thread in self._threads:
            thread.join(timeout=10)
        self._report()  # the figures since the last report
        self._channel.close()

    # Watching the channel

    def _follow(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                stream = self._registry.WatchChannel(
                    registry_pb2.WatchChannelRequest(channel=self._config.channel, edge_id=self._config.edge_id),
                    timeout=WATCH_DEADLINE_S)
                self._call = stream  # type: ignore[assignment]  # the stream is also a grpc.Future
                for assignment in stream:
                    failures = 0
                    self._apply(assignment)
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("channel=%s watch broke (%s: %s); again in %.1f s", self._config.channel,
                            exc.code().name if hasattr(exc, "code") else "?",
                            exc.details() if hasattr(exc, "details") else exc, self._backoff(failures))
            except Exception:  # a follower that dies would leave the edge unmanaged for good
                failures += 1
                log.exception("channel=%s following failed; again in %.1f s", self._config.channel,
                              self._backoff(failures))
            self._stop.wait(self._backoff(failures))

    @staticmethod
    def _backoff(failures: int) -> float:
        first, last = BACKOFF_S
        return min(first * 2 ** max(failures - 1, 0), last)

    def _apply(self, assignment: registry_pb2.WatchChannelResponse) -> None:
        target = assignment.packet
        current = self._runtime.current
        if not target.packet_id or (current is not None and current.packet_id == target.packet_id):
            self._install_error = None
            return
        error = self._install_error
        if error is not None and error.packet_id == target.packet_id:
            return  # refused already: the same bytes would be refused again
        self._report()  # the figures so far belong to the packet served until now
        previous = self._runtime.status().previous
        try:
            if previous is not None and previous.packet_id == target.packet_id:
                served, _ = self._runtime.rollback(target.packet_id)
                how = "rolled back to"
            else:
                served, _ = self._runtime.load(self._download(target))
                how = "installed"
        except errors.Refused as exc:
            self._install_error = registry_pb2.InstallError(packet_id=target.packet_id, reason=exc.reason,
                                                            message=str(exc)[:1000])
            log.warning("channel=%s refused packet=%s reason=%s: %s", self._config.channel, target.packet_id,
                        exc.reason, exc)
        else:
            self._install_error = None
            log.info("channel=%s %s packet=%s name=%s version=%d (%s)", self._config.channel, how, served.packet_id,
                     served.manifest.name, served.version, assignment.reason)
        self._report()

    def _download(self, target: registry_pb2.PacketRef) -> bytes:
        stream = self._registry.FetchPacket(registry_pb2.FetchPacketRequest(packet_id=target.packet_id),
                                               timeout=channels.UNARY_DEADLINE_S)
        data = blobs.receive(stream, f"the registry's FetchPacket stream for {target.packet_id}",
                             (packet.MEDIA_TYPE,))
        if blobs.sha256_hex(data) != target.sha256:
            raise blobs.BlobError(f"packet {target.packet_id} from the registry does not match its assigned sha256")
        return data

    # Reporting

    def _report_loop(self) -> None:
        while not self._stop.wait(self._config.report_seconds):
            self._report()

    def _report(self) -> None:
        """Sends the figures since the last report that got through, and what this edge serves."""
        with self._report_lock:
            now = self._runtime.metrics.snapshot()
            current = self._runtime.current
            request = report_request(self._config, self._reported, now, current.packet_id if current else "",
                                     self._install_error)
            try:
                self._registry.Report(request, timeout=min(self._config.report_seconds, channels.UNARY_DEADLINE_S))
            except grpc.RpcError as exc:
                log.warning("channel=%s report not delivered (%s); its figures go with the next one",
                            self._config.channel, exc.code().name if hasattr(exc, "code") else exc)
                return
            self._reported = now


def report_request(config: FollowConfig, before: Snapshot, now: Snapshot, serving_packet_id: str,
                   install_error: registry_pb2.InstallError | None) -> registry_pb2.ReportRequest:
    """The figures between two snapshots of the runtime's counters, about the packet served now."""
    failed = now.failed - before.failed
    requests = now.served - before.served + failed
    counts = [a - b for a, b in zip(now.bucket_counts, before.bucket_counts, strict=True)]
    request = registry_pb2.ReportRequest(
        channel=config.channel, edge_id=config.edge_id, serving_packet_id=serving_packet_id,
        install_error=install_error)
    if requests and serving_packet_id:
        request.packet_id = serving_packet_id
        request.requests, request.failed_requests = requests, failed
        request.latency.upper_bounds_seconds.extend(BUCKETS_S)
        request.latency.counts.extend(counts)
    return request


def start(runtime: Runtime, config: FollowConfig | None) -> Follower | None:
    """A started follower when the edge is configured with a channel; None otherwise."""
    if config is None:
        return None
    follower = Follower(runtime, config)
    follower.start()
    return follower
