"""A service's Prometheus registry and the HTTP server that serves it at /metrics on a port of its own.

Imported only when the service's metrics are on (prometheus-client costs ~4 MB of RSS). Figures a service reads
from its own state at scrape time come in as `collect` functions, which keeps their request paths untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import prometheus_client
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Collect = Callable[[], Iterable[Metric]]


class _Scraped(Collector):
    def __init__(self, collect: Collect) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


class MetricsEndpoint:
    def __init__(self) -> None:
        # auto_describe: two figures of one name are refused when added, not at every scrape.
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self._stop: Callable[[], None] | None = None

    def add(self, collect: Collect) -> None:
        self.registry.register(_Scraped(collect))

    def start(self, address: str) -> int:
        """Serves /metrics on host:port (port 0 picks one); returns the port."""
        host, _, port = address.rpartition(":")
        server, thread = prometheus_client.start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                                             registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        self._stop = stop
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
