"""What the fleet reports about a packet, summed: requests, failures, a latency histogram, episodes and returns.

Reports carry figures since the sender's previous report, so tallies only add; the latency histograms of all
reports merge bucket by bucket and quantiles are read from the sum, as Prometheus' histogram_quantile does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plasma.registry.v1 import registry_pb2


@dataclass
class Tally:
    requests: int = 0
    failed: int = 0
    episodes: int = 0
    return_sum: float = 0.0
    # Upper bounds in seconds and counts per bucket (one more count: above every bound).
    bounds: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, report: registry_pb2.ReportRequest) -> None:
        self.requests += report.requests
        self.failed += report.failed_requests
        self.episodes += report.episodes
        self.return_sum += report.episode_return_sum
        bounds, counts = list(report.latency.upper_bounds_seconds), list(report.latency.counts)
        if not counts:
            return
        if bounds != self.bounds:
            # Another runtime build with other buckets: start over rather than add unlike buckets.
            self.bounds, self.counts = bounds, [0] * len(counts)
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]

    @property
    def mean_return(self) -> float:
        return self.return_sum / self.episodes if self.episodes else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def latency_ms(self, q: float) -> float:
        """The q-quantile (0..1) of the merged histogram, interpolated within its bucket; 0 without samples."""
        total = sum(self.counts)
        if total == 0:
            return 0.0
        rank, seen, lower = q * total, 0, 0.0
        for bound, count in zip([*self.bounds, self.bounds[-1] if self.bounds else 0.0], self.counts, strict=True):
            if count and seen + count >= rank:
                return 1000 * (lower + (bound - lower) * (rank - seen) / count)
            seen += count
            lower = bound
        return 1000 * lower

    def to_proto(self) -> registry_pb2.Figures:
        return registry_pb2.Figures(
            requests=self.requests, failed_requests=self.failed, error_rate=self.error_rate,
            latency_p50_ms=self.latency_ms(0.5), latency_p99_ms=self.latency_ms(0.99), episodes=self.episodes,
            mean_return=self.mean_return)

    def to_json(self) -> dict[str, Any]:
        return dict(requests=self.requests, failed=self.failed, episodes=self.episodes, return_sum=self.return_sum,
                    bounds=self.bounds, counts=self.counts)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Tally:
        return cls(**raw)
