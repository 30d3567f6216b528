"""The standard health service (grpc.health.v1.Health), with two gaps of grpcio-health-checking 1.85.1 closed.

- `List` is in its proto but not in its servicer: every call answered UNIMPLEMENTED and logged an ERROR with a
  traceback, so any caller could fill the log. Here it answers every service's status.
- `Watch` of a service name keeps a set of watchers per name and never drops the name when its last watcher goes
  away: each distinct name (up to a whole message, 4-16 MiB) stayed in memory for the life of the process (100
  watches of distinct 1 MB names: edge runtime 92 -> 195 MB). Here a name with no watchers left is forgotten.

Both reach into the servicer's `_lock`, `_server_status` and `_send_response_callbacks` (grpcio-health-checking is
pinned in pyproject.toml); tests/security/test_hostile_input.py checks both behaviours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.HealthServicer):
    def __init__(self) -> None:
        # Watch streams hold no thread while they wait for a change.
        super().__init__(experimental_non_blocking=True)

    def List(self, request: health_pb2.HealthListRequest,
             context: grpc.ServicerContext) -> health_pb2.HealthListResponse:
        with self._lock:
            statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()})

    def _on_close_callback(self, send_response_callback: Callable[[Any], None], service: str) -> Callable[[], None]:
        remove_watcher = super()._on_close_callback(send_response_callback, service)

        def callback() -> None:
            remove_watcher()
            with self._lock:
                if not self._send_response_callbacks.get(service):
                    self._send_response_callbacks.pop(service, None)

        return callback
