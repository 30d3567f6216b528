"""Server interceptors that wrap each method's handler: once per method, not once per call."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc


class HandlerWrapper(grpc.ServerInterceptor):
    """grpc asks every interceptor for the handler on every call; the wrapped form is kept per method (and made again
    only if grpc ever resolves another handler for it). Subclasses say how to wrap one handler."""

    def __init__(self) -> None:
        # method -> (the handler grpc found, its wrapped form)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: grpc answers UNIMPLEMENTED
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, method)
        with self._lock:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError
