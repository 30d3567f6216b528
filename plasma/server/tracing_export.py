"""Where a service's spans go: the tracer provider for PLASMA_OTEL_EXPORTER, imported only when tracing is on.

`otlp` sends them over gRPC to an OpenTelemetry collector configured by OpenTelemetry's own variables
(OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4317; OTEL_EXPORTER_OTLP_HEADERS, _CERTIFICATE, ...);
`console` prints each span as JSON on stdout, for a look without a collector.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def provider(exporter: str, service: str) -> TracerProvider:
    """A provider whose spans name their service `plasma-<service>` and leave in batches, off the request path."""
    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    traces = TracerProvider(resource=Resource.create({"service.name": f"plasma-{service}"}))
    traces.add_span_processor(BatchSpanProcessor(span_exporter))
    return traces
