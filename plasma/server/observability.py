"""What a service tells about itself: Prometheus metrics on an HTTP port of its own, and OpenTelemetry traces.

Both are off by default and cost nothing then: no interceptor is installed, channels are left as they are, and
neither prometheus-client nor opentelemetry is imported. On, one server interceptor (plasma.server.observed)
feeds the RPC figures (rpc_metrics.py) and the server spans (tracing.py), and `channel` wraps the channels a
service opens to another so that its calls carry the trace on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from plasma import log as plog
from plasma.server import settings
from plasma.server.observed import Observe, Observer

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from plasma.server.metrics_endpoint import Collect, MetricsEndpoint

log = plog.get(__name__)

EXPORTERS = ("none", "console", "otlp")
EXPORTER_VARIABLE = "PLASMA_OTEL_EXPORTER"


def metrics_variable(service: str) -> str:
    return f"PLASMA_{service.upper()}_METRICS_ADDRESS"


class Observability:
    """One service's metrics and tracing. `metrics_address` "" turns metrics off (port 0 picks a free port);
    `tracer_provider` None turns tracing off (tests pass one with an in-memory exporter)."""

    def __init__(self, service: str, metrics_address: str = "",
                 tracer_provider: TracerProvider | None = None) -> None:
        self.service = service
        self._address = metrics_address
        self._provider = tracer_provider
        self._endpoint: MetricsEndpoint | None = None
        observers: list[Observer] = []
        if tracer_provider is not None:
            from plasma.server.tracing import ClientTracing, ServerTracing

            observers.append(ServerTracing(tracer_provider))
            self._client_tracing: ClientTracing | None = ClientTracing(tracer_provider)
        else:
            self._client_tracing = None
        if metrics_address:
            from plasma.server.metrics_endpoint import MetricsEndpoint
            from plasma.server.rpc_metrics import RpcMetrics

            self._endpoint = MetricsEndpoint()
            observers.append(RpcMetrics(self._endpoint.registry))
        # Tracing first, so that the span is current while the figures are taken too.
        self._observe = Observe(observers) if observers else None
        self.metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str) -> Observability:
        """PLASMA_<SERVICE>_METRICS_ADDRESS (host:port, off when unset) and PLASMA_OTEL_EXPORTER (none, console or
        otlp). Where opentelemetry is not installed (the edge's image), tracing stays off and a line says so."""
        address = settings.read(env, metrics_variable(service), "", str, lambda a: ":" in a, "host:port")
        exporter = settings.read(env, EXPORTER_VARIABLE, "none", str.lower, lambda e: e in EXPORTERS,
                                 "none, console or otlp")
        provider = None
        if exporter != "none":
            try:
                from plasma.server import tracing, tracing_export  # noqa: F401  (both, or tracing cannot work)

                provider = tracing_export.provider(exporter, service)
            except ImportError as exc:
                log.warning("%s=%s but %s is not installed here: %s runs without tracing (install "
                            "opentelemetry-sdk, and opentelemetry-exporter-otlp-proto-grpc for otlp)",
                            EXPORTER_VARIABLE, exporter, exc.name, service)
        return cls(service, address, provider)

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        """The server interceptor to install first (it sees calls other interceptors refuse); none when off."""
        return [self._observe] if self._observe is not None else []

    def channel(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel`, its calls traced as children of the current span when tracing is on."""
        return grpc.intercept_channel(channel, self._client_tracing) if self._client_tracing is not None else channel

    def register(self, collect: Collect) -> None:
        """Adds figures read at scrape time (prometheus-client metric families); ignored when metrics are off."""
        if self._endpoint is not None:
            self._endpoint.add(collect)

    def start(self) -> int | None:
        """Serves /metrics when metrics are on, once; returns its port."""
        if self._endpoint is not None and self.metrics_port is None:
            try:
                self.metrics_port = self._endpoint.start(self._address)
            except (OSError, ValueError) as exc:
                raise settings.ConfigError(f"{metrics_variable(self.service)}={self._address!r} is not valid: "
                                           f"cannot serve /metrics there ({exc})") from exc
            log.info("metrics serving /metrics port=%d", self.metrics_port)
        return self.metrics_port

    def stop(self) -> None:
        """Stops /metrics and sends the spans still buffered; the calls traced after this are dropped."""
        if self._endpoint is not None:
            self._endpoint.stop()
            self.metrics_port = None
        shutdown = getattr(self._provider, "shutdown", None)  # the SDK's provider has it, the API's has not
        self._provider = None
        if shutdown is not None:
            shutdown()

