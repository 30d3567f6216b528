"""Request figures of the edge runtime: kept with one lock on the request path, read by GetStatus, and
exported to Prometheus on a separate HTTP port when PLASMA_EDGE_METRICS_ADDRESS is set.

prometheus-client is imported only then (it costs ~4 MB of RSS); its collector reads these figures at scrape
time instead of updating prometheus objects on every request, which keeps the request path short.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plasma import log as plog

if TYPE_CHECKING:
    from edge_runtime.session import ServedPacket

log = plog.get(__name__)

# Requests whose inference latency GetStatus summarises.
LATENCY_WINDOW = 1024
# Inference latency histogram buckets, seconds: a batch-1 policy answers in tens of microseconds.
BUCKETS_S = (2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS_S)


@dataclass(frozen=True)
class Snapshot:
    served: int
    failed: int
    observations: int
    loaded: int
    refused: int
    refused_by_reason: dict[str, int]
    rollbacks: int
    latency_ms: tuple[float, float, float]  # p50, p90, p99 of the window
    latency_count: int
    bucket_counts: tuple[int, ...]  # per bucket (not cumulative), then +Inf
    latency_sum_s: float
    control_streams: int


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served = 0
        self._failed = 0
        self._observations = 0
        self._loaded = 0
        self._refused: collections.Counter[str] = collections.Counter()
        self._rollbacks = 0
        self._window: collections.deque[int] = collections.deque(maxlen=LATENCY_WINDOW)
        self._buckets = [0] * (len(_BUCKETS_NS) + 1)
        self._sum_ns = 0
        self._control_streams = 0
        self.current: ServedPacket | None = None

    # The request path

    def served(self, observations: int, elapsed_ns: int) -> None:
        index = bisect.bisect_left(_BUCKETS_NS, elapsed_ns)
        with self._lock:
            self._served += 1
            self._observations += observations
            self._window.append(elapsed_ns)
            self._buckets[index] += 1
            self._sum_ns += elapsed_ns

    def failed(self) -> None:
        with self._lock:
            self._failed += 1

    # Everything else

    def loaded(self) -> None:
        with self._lock:
            self._loaded += 1

    def refused(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    def rolled_back(self) -> None:
        with self._lock:
            self._rollbacks += 1

    def serving(self, served: ServedPacket | None) -> None:
        self.current = served

    def control_streams(self, delta: int) -> None:
        with self._lock:
            self._control_streams += delta

    def snapshot(self) -> Snapshot:
        with self._lock:
            window = sorted(self._window)
            figures: dict[str, Any] = dict(
                served=self._served, failed=self._failed, observations=self._observations, loaded=self._loaded,
                refused=sum(self._refused.values()), refused_by_reason=dict(self._refused), rollbacks=self._rollbacks,
                bucket_counts=tuple(self._buckets), latency_sum_s=self._sum_ns / 1e9,
                control_streams=self._control_streams)
        p50, p90, p99 = (_percentile(window, q) / 1e6 for q in (50, 90, 99)) if window else (0.0, 0.0, 0.0)
        return Snapshot(latency_ms=(p50, p90, p99), latency_count=len(window), **figures)


def _percentile(ordered: list[int], q: float) -> float:
    """numpy's default (linear) percentile of a sorted list, in plain Python: np.percentile's first call
    costs the serving process ~2.5 MB of RSS."""
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def collector(metrics: Metrics) -> Callable[[], Iterator[Any]]:
    """The edge's own figures as Prometheus reads them at scrape time (plasma.server.observability serves them,
    beside the RPC figures every service exports)."""

    def collect() -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        figures = metrics.snapshot()
        requests = CounterMetricFamily("plasma_edge_requests", "Act calls and Control messages, by outcome",
                                       labels=["outcome"])
        requests.add_metric(["ok"], figures.served)
        requests.add_metric(["error"], figures.failed)
        yield requests
        yield CounterMetricFamily("plasma_edge_observations", "Observations answered (batches count each)",
                                  value=figures.observations)
        cumulative, buckets = 0, []
        for bound, count in zip((*[repr(b) for b in BUCKETS_S], "+Inf"), figures.bucket_counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("plasma_edge_inference_seconds",
                                    "Validation + onnxruntime time per answered request",
                                    buckets=buckets, sum_value=figures.latency_sum_s)
        loads = CounterMetricFamily("plasma_edge_packet_loads", "LoadPacket and Rollback outcomes",
                                    labels=["result"])
        loads.add_metric(["loaded"], figures.loaded)
        loads.add_metric(["rolled_back"], figures.rollbacks)
        for reason, count in sorted(figures.refused_by_reason.items()):
            loads.add_metric([f"refused_{reason}"], count)
        yield loads
        current = metrics.current
        yield GaugeMetricFamily("plasma_edge_serving", "1 while a packet is served",
                                value=int(current is not None))
        yield GaugeMetricFamily("plasma_edge_packet_version", "Version of the packet served (0: none)",
                                value=current.version if current is not None else 0)
        info = GaugeMetricFamily("plasma_edge_packet_info", "The packet served",
                                 labels=["packet_id", "name", "version", "kind", "sha256"])
        if current is not None:
            info.add_metric([current.packet_id, current.manifest.name, str(current.version),
                             current.manifest.kind, current.sha256], 1)
        yield info
        yield GaugeMetricFamily("plasma_edge_control_streams", "Open Control streams",
                                value=figures.control_streams)

    return collect
