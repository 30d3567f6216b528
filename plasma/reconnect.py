"""When a client tries a broken call again, and how long it waits before each try.

Shared by every client that resumes after a service restarted or a connection broke: the trainer's durable
simulation stream (plasma.subscription), and the SDK's Train follower and Control session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import grpc

# Statuses of a broken transport, not of a bad request: worth trying again. A service's own verdicts
# (INVALID_ARGUMENT, NOT_FOUND, ABORTED for a failed job, CANCELLED for a cancelled one, ...) are final.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def retryable(error: grpc.RpcError) -> bool:
    """True for a broken transport: a reset connection surfaces as UNAVAILABLE, or as INTERNAL naming the reset
    HTTP/2 stream."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() or "") if hasattr(error, "details") else ""
    return code in _RETRYABLE or (code == grpc.StatusCode.INTERNAL and "RST_STREAM" in details)


@dataclass(frozen=True)
class Reconnect:
    """How hard to try after a broken call. Attempts count consecutive failures; a call that got through resets
    the count."""

    attempts: int = 8
    # Sleep before the first retry, doubling per failed attempt up to max_backoff_seconds.
    first_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    # How long one attempt waits for the channel to (re)connect before it counts as failed.
    connect_seconds: float = 10.0

    def wait(self, channel: grpc.Channel, error: grpc.RpcError, failures: int, deadline: float,
             stop: threading.Event | None = None) -> None:
        """Sleeps the backoff and waits for the channel to connect; re-raises `error` when out of attempts or
        time (`deadline` on time.monotonic). Returns early once `stop` is set."""
        backoff = self.backoff(error, failures, deadline)
        if stop is None:
            time.sleep(backoff)
        elif stop.wait(backoff):
            return
        # On a timeout the next call fails fast with UNAVAILABLE and counts as another failure.
        with contextlib.suppress(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(
                timeout=max(min(self.connect_seconds, deadline - time.monotonic()), 0.001))

    def backoff(self, error: grpc.RpcError, failures: int, deadline: float) -> float:
        """Seconds to sleep before the next try (also for asyncio clients); re-raises `error` when out of attempts
        or time."""
        if failures > self.attempts:
            raise error
        backoff = min(self.first_backoff_seconds * 2 ** (failures - 1), self.max_backoff_seconds)
        if time.monotonic() + backoff >= deadline:
            raise error
        return backoff


DEFAULT_RECONNECT = Reconnect()
