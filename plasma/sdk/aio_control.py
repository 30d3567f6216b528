"""plasma.sdk.control.ControlSession for asyncio: lock-step control over one Control stream that opens a new
stream and sends the unanswered observation again after the edge restarted or the connection broke."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import numpy as np

from plasma import log as plog
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.sdk import aio_streams, calls
from plasma.sdk.control import Lockstep, broken

log = plog.get(__name__)


if TYPE_CHECKING:
    from plasma.edge.v1.edge_pb2_grpc import EdgeRuntimeServiceAsyncStub
else:  # a type for type checkers only (mypy-protobuf); at run time the stub is one class
    EdgeRuntimeServiceAsyncStub = edge_pb2_grpc.EdgeRuntimeServiceStub


class AsyncControlSession(Lockstep[EdgeRuntimeServiceAsyncStub, grpc.aio.Channel]):
    """`await session.act(observation)`; one loop per session; `async with` closes its stream."""

    _call: grpc.aio.StreamStreamCall[edge_pb2.ControlRequest, edge_pb2.ControlResponse] | None = None

    async def act(self, observation: np.ndarray) -> edge_pb2.ControlResponse:
        """The edge's answer (action, packet id and version) to one observation, or a batch [n, obs_dim]."""
        request, deadline = self._next(observation)
        failures = 0
        while True:
            if self._call is None:
                self._call = self._stub.Control(timeout=self._stream_deadline_s)
            call = self._call
            try:
                await call.write(request)
                response = await call.read()
            except grpc.RpcError as error:
                self.close()
                if not broken(error):
                    raise
                failures += 1
                log.info("control stream broke at sequence=%d (%s); opening a new one", self._sequence,
                         error.code())
                await aio_streams.wait(self._reconnect, self._channel, error, failures, deadline)
                self.reconnects += 1
                continue
            if not isinstance(response, edge_pb2.ControlResponse):  # grpc.aio.EOF: the stream ended
                self.close()
                raise RuntimeError(f"the Control stream ended before answering sequence {request.sequence}")
            return calls.check_sequence(response, request.sequence)

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = None

    async def __aenter__(self) -> AsyncControlSession:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()
