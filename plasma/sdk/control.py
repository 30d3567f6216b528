"""A control loop over the edge's Control stream that survives the edge restarting under it."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

import grpc
import numpy as np

from plasma import channels
from plasma import log as plog
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.reconnect import DEFAULT_RECONNECT, Reconnect, retryable
from plasma.sdk import calls

log = plog.get(__name__)


StubT = TypeVar("StubT")
ChannelT = TypeVar("ChannelT")


class Lockstep(Generic[StubT, ChannelT]):
    """What a control session keeps, whether it waits in threads (ControlSession) or in asyncio
    (plasma.sdk.aio_control): where it sends, how long and how hard it tries, and its sequence numbers."""

    def __init__(self, stub: StubT, channel: ChannelT, stream_deadline_s: float = channels.STREAM_DEADLINE_S,
                 reconnect: Reconnect = DEFAULT_RECONNECT) -> None:
        self._stub = stub
        self._channel = channel
        self._stream_deadline_s = stream_deadline_s
        self._reconnect = reconnect
        self._sequence = 0
        self.reconnects = 0  # streams opened again after a broken one

    def _next(self, observation: np.ndarray, reward: float | None = None, terminated: bool = False,
              truncated: bool = False) -> tuple[edge_pb2.ControlRequest, float]:
        """The next observation's request, and the deadline (time.monotonic) for its answer."""
        self._sequence += 1
        request = calls.control(self._sequence, observation, reward, terminated, truncated)
        return request, time.monotonic() + self._stream_deadline_s


class ControlSession(Lockstep[edge_pb2_grpc.EdgeRuntimeServiceStub, grpc.Channel]):
    """Lock-step control over one Control stream: `act` sends one observation and returns its answer.

    After a broken stream (the edge restarted, the connection was reset) it opens a new stream and sends the
    unanswered observation again: an action depends only on the observation and the packet served, so the loop
    loses no step and gets none answered twice. One loop per session (not thread-safe); close it when done.
    """

    def __init__(self, stub: edge_pb2_grpc.EdgeRuntimeServiceStub, channel: grpc.Channel,
                 stream_deadline_s: float = channels.STREAM_DEADLINE_S,
                 reconnect: Reconnect = DEFAULT_RECONNECT) -> None:
        super().__init__(stub, channel, stream_deadline_s, reconnect)
        self._outbox: queue.Queue[edge_pb2.ControlRequest | None] | None = None
        self._responses: Iterator[edge_pb2.ControlResponse] | None = None

    def act(self, observation: np.ndarray, reward: float | None = None, terminated: bool = False,
            truncated: bool = False) -> edge_pb2.ControlResponse:
        """The edge's answer (action, packet id and version) to one observation, or a batch [n, obs_dim]. `reward`
        and the done flags describe the step that led to `observation`, for an edge that records experience (a
        message sent again on a new stream after a break records no transition: it has no predecessor there)."""
        request, deadline = self._next(observation, reward, terminated, truncated)
        failures = 0
        while True:
            outbox, responses = self._stream()
            outbox.put(request)
            try:
                response = next(responses)
            except grpc.RpcError as error:
                self._close_stream()
                if not broken(error):
                    raise
                failures += 1
                log.info("control stream broke at sequence=%d (%s); opening a new one", self._sequence,
                         error.code())
                self._reconnect.wait(self._channel, error, failures, deadline)
                self.reconnects += 1
                continue
            return calls.check_sequence(response, request.sequence)

    def close(self) -> None:
        self._close_stream()

    def __enter__(self) -> ControlSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _stream(self) -> tuple[queue.Queue[edge_pb2.ControlRequest | None], Iterator[edge_pb2.ControlResponse]]:
        if self._outbox is None or self._responses is None:
            self._outbox = queue.Queue()
            self._responses = self._stub.Control(iter(self._outbox.get, None), timeout=self._stream_deadline_s)
        return self._outbox, self._responses

    def _close_stream(self) -> None:
        if self._outbox is not None:
            self._outbox.put(None)  # ends the request iterator, and with it gRPC's thread reading it
        if isinstance(self._responses, grpc.Call):
            self._responses.cancel()
        self._outbox = self._responses = None


def broken(error: grpc.RpcError) -> bool:
    """A broken transport, or the edge shutting down: it cancels open streams when its grace period ends
    (a session never cancels a stream it is waiting on). Also plasma.sdk.aio_control's test."""
    return retryable(error) or error.code() == grpc.StatusCode.CANCELLED
