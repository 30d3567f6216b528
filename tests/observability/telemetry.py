"""Observability for services under test: metrics on a free port, spans into one in-memory exporter, and a
reader of what /metrics serves."""

from __future__ import annotations

import urllib.request

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from plasma.server.observability import Observability

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def provider(service: str, exporter: InMemorySpanExporter) -> TracerProvider:
    """Spans of `service` (resource service.name plasma-<service>), each exported as it ends."""
    traces = TracerProvider(resource=Resource.create({"service.name": f"plasma-{service}"}))
    traces.add_span_processor(SimpleSpanProcessor(exporter))
    return traces


def observed(service: str, exporter: InMemorySpanExporter) -> Observability:
    """Metrics on a free port (started) and tracing into `exporter`."""
    observability = Observability(service, "127.0.0.1:0", provider(service, exporter))
    observability.start()
    return observability


def scrape(observability: Observability) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{observability.metrics_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of `name` with exactly these labels; 0 when there is none (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc(service: str, method: str, kind: str = "unary") -> dict[str, str]:
    """The labels of one method's RPC figures."""
    return {"grpc_type": kind, "grpc_service": service, "grpc_method": method}


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])
