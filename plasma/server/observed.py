"""One server interceptor for everything that watches calls (RPC metrics, tracing): each call's start, the time
its servicer code runs, and the status it ends with, however it ends.

grpc's termination callback is the one place every ending passes through (an answer, an abort, an exception, a
client that cancelled, a deadline), but there grpc says the status only when the servicer set one; the rest is
told from what the servicer did: returned (OK), raised while the call was live (UNKNOWN, as grpc answers it), or
never finished (the deadline passed: DEADLINE_EXCEEDED; else the client cancelled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from plasma.server.wrapping import HandlerWrapper

Behavior = Callable[[Any, grpc.ServicerContext], Any]

# grpc's handler attributes and the names RPC metrics and tracing give them.
KINDS = (("unary_unary", "unary"), ("unary_stream", "server_stream"), ("stream_unary", "client_stream"),
         ("stream_stream", "bidi_stream"))
_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler, "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler, "stream_stream": grpc.stream_stream_rpc_method_handler,
}


@dataclass(frozen=True)
class Call:
    """What is known of a call when it starts."""

    service: str  # e.g. plasma.simulator.v1.SimulatorService
    method: str  # e.g. Simulate
    kind: str  # unary, server_stream, client_stream or bidi_stream
    context: grpc.ServicerContext


class Watch(Protocol):
    """One observer's hold on one call."""

    def active(self) -> contextlib.AbstractContextManager[object]:
        """Entered while the servicer's code runs (for a streamed answer: while it makes each message)."""

    def end(self, code: grpc.StatusCode) -> None: ...


class Observer(Protocol):
    def start(self, call: Call) -> Watch: ...


@dataclass
class _Outcome:
    finished: bool = False
    failed: bool = False  # raised while the call was still live

    def code(self, context: grpc.ServicerContext) -> grpc.StatusCode:
        set_code = context.code()  # type: ignore[attr-defined]  # grpc has it (since 1.38); types-grpcio not
        if set_code is not None:
            return set_code
        if self.failed:
            return grpc.StatusCode.UNKNOWN
        if self.finished:
            return grpc.StatusCode.OK
        remaining = context.time_remaining()
        return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 \
            else grpc.StatusCode.CANCELLED


class Observe(HandlerWrapper):
    """Wraps every method handler so that each observer sees each call start, run and end."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        super().__init__()
        self._observers = tuple(observers)

    def wrap(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").rpartition("/")
        for attribute, kind in KINDS:
            behavior: Behavior | None = getattr(handler, attribute)
            if behavior is not None:
                observed = self._observed(behavior, service, method, kind, streamed=handler.response_streaming)
                return _FACTORIES[attribute](observed, handler.request_deserializer, handler.response_serializer)
        return handler

    def _observed(self, behavior: Behavior, service: str, method: str, kind: str, streamed: bool) -> Behavior:
        observers = self._observers

        def begin(context: grpc.ServicerContext) -> tuple[list[Watch], _Outcome]:
            call = Call(service, method, kind, context)
            watches = [observer.start(call) for observer in observers]
            outcome = _Outcome()

            def ended() -> None:
                code = outcome.code(context)
                for watch in watches:
                    watch.end(code)

            if not context.add_callback(ended):  # the call had already ended
                ended()
            return watches, outcome

        def one(request: Any, context: grpc.ServicerContext) -> Any:
            watches, outcome = begin(context)
            with _all_active(watches), _noting(outcome, context):
                response = behavior(request, context)
            outcome.finished = True
            return response

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            watches, outcome = begin(context)
            with _all_active(watches), _noting(outcome, context):
                responses = iter(behavior(request, context))
            while True:
                with _all_active(watches), _noting(outcome, context):
                    try:
                        response = next(responses)
                    except StopIteration:
                        outcome.finished = True
                        return
                yield response

        return stream if streamed else one


@contextlib.contextmanager
def _noting(outcome: _Outcome, context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except BaseException:
        outcome.failed = context.is_active()  # not a client that went away, nor a passed deadline
        raise


@contextlib.contextmanager
def _all_active(watches: Sequence[Watch]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for watch in watches:
            stack.enter_context(watch.active())
        yield
