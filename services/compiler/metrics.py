"""The compiler's own figures for Prometheus: compilations by outcome and precision, and the packets' sizes.

Counted as each Compile stream ends and exported at scrape time; compilations are few and long, so one lock
is all they cost.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Iterator
from typing import Any

from plasma.compiler.v1 import compiler_pb2

# Packet sizes, bytes: a small policy's int8 packet is about 10 KB.
BUCKETS_BYTES = (2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 5_000_000)


class Figures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiles: collections.Counter[tuple[str, str]] = collections.Counter()  # (outcome, precision)
        self._buckets = [0] * (len(BUCKETS_BYTES) + 1)  # per bucket (not cumulative), then +Inf
        self._bytes = 0

    def counted(self, responses: Iterator[compiler_pb2.CompileResponse]) -> Iterator[compiler_pb2.CompileResponse]:
        """A Compile stream's responses, passed on; how it ended is counted once it has."""
        packet: compiler_pb2.Packet | None = None
        outcome = "failed"
        try:
            for response in responses:
                if response.HasField("packet"):
                    packet = response.packet
                yield response
        except GeneratorExit:  # the client went away (or its deadline passed) mid-stream
            outcome = "cancelled"
            raise
        finally:
            self._record(outcome, packet)

    def _record(self, outcome: str, packet: compiler_pb2.Packet | None) -> None:
        with self._lock:
            if packet is None:
                self._compiles[(outcome, "")] += 1
                return
            precision = compiler_pb2.Precision.Name(packet.precision).removeprefix("PRECISION_").lower()
            self._compiles[("succeeded", precision)] += 1
            self._buckets[bisect.bisect_left(BUCKETS_BYTES, packet.size_bytes)] += 1
            self._bytes += packet.size_bytes

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        with self._lock:
            compiles = dict(self._compiles)
            counts, total_bytes = list(self._buckets), self._bytes
        family = CounterMetricFamily("plasma_compiler_compiles", "Compile calls by how they ended; succeeded ones "
                                     "by the precision of their packet", labels=["outcome", "precision"])
        for (outcome, precision), count in sorted(compiles.items()):
            family.add_metric([outcome, precision], count)
        yield family
        cumulative, buckets = 0, []
        for bound, count in zip((*[str(b) for b in BUCKETS_BYTES], "+Inf"), counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("plasma_compiler_packet_bytes", "Size of each packet compiled, signed",
                                    buckets=buckets, sum_value=total_bytes)
