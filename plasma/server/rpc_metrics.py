"""The RPC figures every service exports: calls started, calls handled by status code, and how long they took.

Named and labelled as grpc-ecosystem's go-grpc-prometheus (and py-grpc-prometheus) name them, so that dashboards
and alerts written for those read Plasma's services unchanged. Imported only when a service's metrics are on.
"""

from __future__ import annotations

import contextlib
import time

import grpc
import prometheus_client

from plasma.server.observed import Call

LABELS = ("grpc_type", "grpc_service", "grpc_method")
# Seconds, from the edge's sub-millisecond Act to the hour-long Train and Compile streams.
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
             300.0, 900.0, 3600.0)


class RpcMetrics:
    """An observer (plasma.server.observed) that counts and times every call."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self._started = prometheus_client.Counter(
            "grpc_server_started", "RPCs started on the server", LABELS, registry=registry)
        self._handled = prometheus_client.Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code", (*LABELS, "grpc_code"),
            registry=registry)
        self._seconds = prometheus_client.Histogram(
            "grpc_server_handling_seconds", "Time from an RPC's start to its status (whole streams)", LABELS,
            buckets=BUCKETS_S, registry=registry)

    def start(self, call: Call) -> _Timed:
        labels = (call.kind, call.service, call.method)
        self._started.labels(*labels).inc()
        return _Timed(self, labels, time.perf_counter())


class _Timed:
    def __init__(self, metrics: RpcMetrics, labels: tuple[str, str, str], started: float) -> None:
        self._metrics = metrics
        self._labels = labels
        self._started = started

    def active(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def end(self, code: grpc.StatusCode) -> None:
        self._metrics._seconds.labels(*self._labels).observe(time.perf_counter() - self._started)
        self._metrics._handled.labels(*self._labels, code.name).inc()
