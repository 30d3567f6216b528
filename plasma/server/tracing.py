"""OpenTelemetry spans for every RPC a service serves and every call it makes to another service, joined into one
trace by W3C trace context (`traceparent`, `tracestate`) carried in gRPC metadata.

A served call's span is current while its servicer's code runs, so the calls that code makes (through a channel
wrapped by `ClientTracing`) become its children, and the service called extracts their context as its parent.
Span names, kinds and attributes follow OpenTelemetry's RPC conventions. Imported only when tracing is on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from plasma.server.observed import Call

_PROPAGATOR = TraceContextTextMapPropagator()
# The codes that mark a server span as an error (the conventions: the others are the client's doing).
_SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
                            grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


def _attributes(service: str, method: str) -> dict[str, str]:
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _finish(span: Span, code: grpc.StatusCode, error: bool) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if error:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


class ServerTracing:
    """An observer (plasma.server.observed): a SERVER span per call, child of the caller's span if it sent one."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("plasma.server")

    def start(self, call: Call) -> _ServerSpan:
        carrier = {key: value for key, value in call.context.invocation_metadata() or () if isinstance(value, str)}
        span = self._tracer.start_span(f"{call.service}/{call.method}", context=_PROPAGATOR.extract(carrier),
                                       kind=SpanKind.SERVER, attributes=_attributes(call.service, call.method))
        return _ServerSpan(span)


class _ServerSpan:
    def __init__(self, span: Span) -> None:
        self._span = span

    def active(self) -> Any:  # trace.use_span's context manager
        return trace.use_span(self._span, end_on_exit=False, record_exception=False,
                              set_status_on_exception=False)

    def end(self, code: grpc.StatusCode) -> None:
        _finish(self._span, code, error=code in _SERVER_ERRORS)


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _CallDetails(_Details, grpc.ClientCallDetails):
    """grpc takes any ClientCallDetails; this one is the caller's with the trace context added to its metadata."""


class ClientTracing(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """A CLIENT span per call, child of the current span, its context sent along in the call's metadata."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("plasma.client")

    def intercept_unary_unary(self, continuation: Any, client_call_details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return self._traced(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return self._traced(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: grpc.ClientCallDetails,
                               request_iterator: Any) -> Any:
        return self._traced(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: grpc.ClientCallDetails,
                                request_iterator: Any) -> Any:
        return self._traced(continuation, client_call_details, request_iterator)

    def _traced(self, continuation: Callable[[grpc.ClientCallDetails, Any], Any], details: grpc.ClientCallDetails,
                request: Any) -> Any:
        service, _, method = details.method.lstrip("/").rpartition("/")
        span = self._tracer.start_span(f"{service}/{method}", kind=SpanKind.CLIENT,
                                       attributes=_attributes(service, method))
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        traced = _CallDetails(details.method, details.timeout, [*(details.metadata or ()), *carrier.items()],
                              details.credentials, details.wait_for_ready, details.compression)
        try:
            call = continuation(traced, request)
        except BaseException:
            _finish(span, grpc.StatusCode.UNKNOWN, error=True)
            raise
        # Streams end when their last message is read or they are cancelled, not when this returns.
        call.add_done_callback(lambda done: _finish(span, done.code(), error=done.code() != grpc.StatusCode.OK))
        return call
