"""What every Plasma gRPC server shares: options, health, reflection, graceful shutdown."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from concurrent import futures

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from plasma import log as plog
from plasma.channels import MAX_MESSAGE_BYTES
from plasma.server.health import HealthServicer
from plasma.server.observability import Observability
from plasma.server.parsing import RejectUnparseable
from plasma.server.security import ServerSecurity
from plasma.server.settings import ConfigError

log = plog.get(__name__)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def build_server(max_workers: int, max_concurrent_rpcs: int | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES,
                 security: ServerSecurity | None = None, observability: Observability | None = None) -> grpc.Server:
    """Every Plasma service's server: a bounded thread pool, bounded concurrency, bounded message sizes, with
    `security` that authorizes, every call checked against plasma.server.roles, and with `observability` every call
    counted and traced."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=[("grpc.max_send_message_length", max_message_bytes),
                 ("grpc.max_receive_message_length", max_message_bytes)],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        # Metrics and traces first, to see refused calls too; then authorization; then requests that do not parse
        # get INVALID_ARGUMENT, not grpcio's leak (parsing.py).
        interceptors=[*(observability.interceptors() if observability is not None else ()),
                      *(security.interceptors() if security is not None else ()), RejectUnparseable()],
    )


def add_health_and_reflection(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Registers the standard health and reflection services; every service starts NOT_SERVING."""
    names = list(service_names)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in names:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server)
    return health_servicer


def set_serving(health_servicer: health.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in [*service_names, ""]:
        health_servicer.set(name, status)


def bind(server: grpc.Server, address: str, security: ServerSecurity | None = None) -> int:
    """Listens on `address`: TLS when `security` has a certificate, plaintext otherwise."""
    if security is not None and security.tls:
        try:
            port = server.add_secure_port(address, security.credentials())
        except RuntimeError as exc:  # grpc says no more than "Failed to bind"; its log line says which
            raise ConfigError(f"cannot serve TLS on {address} with certificate {security.cert} and key "
                              f"{security.key}: a file that is not PEM, a key that is not the certificate's, or "
                              f"the address is in use ({exc})") from exc
    else:
        if address.rpartition(":")[0] not in _LOOPBACK_HOSTS:
            log.warning("plaintext gRPC on %s: whoever reaches this port may call every RPC; set the service's "
                        "*_TLS_CERT, *_TLS_KEY and *_TLS_CLIENT_CA (docs/security.md)", address)
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    return port


def run_until_signal(
    server: grpc.Server,
    grace_seconds: float,
    health_servicer: health.HealthServicer | None = None,
    on_stop: Callable[[], None] | None = None,
    on_signal: Callable[[], None] | None = None,
) -> None:
    """Blocks until SIGTERM/SIGINT, then drains: NOT_SERVING, refuse new RPCs, let in-flight ones finish.

    `on_signal` runs before draining starts, e.g. so that handlers cut off by the drain can tell a stopping
    server from a client that went away."""
    stop_requested = threading.Event()

    def _handle(signum: int, _frame: object) -> None:
        log.info("signal=%s shutting down grace_seconds=%s", signal.Signals(signum).name, grace_seconds)
        stop_requested.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    stop_requested.wait()
    if on_signal is not None:
        on_signal()
    if health_servicer is not None:
        health_servicer.enter_graceful_shutdown()
    server.stop(grace_seconds).wait()
    if on_stop is not None:
        on_stop()
    log.info("stopped")


def now_timestamp() -> timestamp_pb2.Timestamp:
    """The current time as a protobuf Timestamp, for create_time fields."""
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
