"""Every way a call can end, as RPC metrics and spans record it, on a real server on port 0: answered, aborted,
raised, cancelled by its client, past its deadline; and a span current while the servicer runs, parented by the
calling client's span."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plasma.server import grpc_server
from plasma.server.observability import Observability
from tests.observability.telemetry import observed, provider, rpc, scrape, value

SERVICE = "test.v1.Probe"
T = 10.0


def _current_span_id(request: bytes, context: grpc.ServicerContext) -> bytes:
    return format(trace.get_current_span().get_span_context().span_id, "016x").encode()


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort raises")


def _raise(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("a bug")


def _endless(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    while context.is_active():
        yield _current_span_id(request, context)
        time.sleep(0.02)


def _count(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return str(sum(1 for _ in requests)).encode()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def probe(spans: InMemorySpanExporter) -> Iterator[tuple[Observability, grpc.Channel]]:
    observability = observed("probe", spans)
    server = grpc_server.build_server(4, observability=observability)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Span": grpc.unary_unary_rpc_method_handler(_current_span_id),
        "Abort": grpc.unary_unary_rpc_method_handler(_abort),
        "Raise": grpc.unary_unary_rpc_method_handler(_raise),
        "Endless": grpc.unary_stream_rpc_method_handler(_endless),
        "Count": grpc.stream_unary_rpc_method_handler(_count),
    })])
    port = grpc_server.bind(server, "127.0.0.1:0")
    server.start()
    client = Observability("client", tracer_provider=provider("client", spans))
    channel = client.channel(grpc.insecure_channel(f"127.0.0.1:{port}"))
    try:
        yield observability, channel
    finally:
        channel.close()
        server.stop(None).wait()
        observability.stop()


def _handled(observability: Observability, method: str, code: str, kind: str = "unary") -> float:
    return value(scrape(observability), "grpc_server_handled_total", **rpc(SERVICE, method, kind), grpc_code=code)


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """The termination callback runs on grpc's own thread, a moment after the client saw the status."""
    deadline = time.monotonic() + T
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_answered_aborted_and_raised_calls_are_counted_with_their_status(
    probe: tuple[Observability, grpc.Channel]
) -> None:
    observability, channel = probe
    channel.unary_unary(f"/{SERVICE}/Span")(b"", timeout=T)
    for method, code in (("Abort", grpc.StatusCode.NOT_FOUND), ("Raise", grpc.StatusCode.UNKNOWN)):
        with pytest.raises(grpc.RpcError) as error:
            channel.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=T)
        assert error.value.code() == code
    _eventually(lambda: _handled(observability, "Raise", "UNKNOWN") == 1, "the raising call is counted")
    samples = scrape(observability)
    assert value(samples, "grpc_server_handled_total", **rpc(SERVICE, "Span"), grpc_code="OK") == 1
    assert value(samples, "grpc_server_handled_total", **rpc(SERVICE, "Abort"), grpc_code="NOT_FOUND") == 1
    assert value(samples, "grpc_server_started_total", **rpc(SERVICE, "Raise")) == 1
    assert value(samples, "grpc_server_handling_seconds_count", **rpc(SERVICE, "Abort")) == 1
    assert value(samples, "grpc_server_handling_seconds_bucket", **rpc(SERVICE, "Abort"), le="+Inf") == 1


def test_a_stream_its_client_cancels_and_one_past_its_deadline(probe: tuple[Observability, grpc.Channel]) -> None:
    observability, channel = probe
    endless = channel.unary_stream(f"/{SERVICE}/Endless")
    stream = endless(b"", timeout=T)
    next(stream)
    stream.cancel()
    with pytest.raises(grpc.RpcError) as error:
        for _ in endless(b"", timeout=0.3):
            pass
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _eventually(lambda: _handled(observability, "Endless", "DEADLINE_EXCEEDED", "server_stream") == 1,
                "the stream past its deadline is counted")
    _eventually(lambda: _handled(observability, "Endless", "CANCELLED", "server_stream") == 1,
                "the cancelled stream is counted")


def test_a_client_stream_is_counted_once_answered(probe: tuple[Observability, grpc.Channel]) -> None:
    observability, channel = probe
    assert channel.stream_unary(f"/{SERVICE}/Count")(iter([b"a", b"b", b"c"]), timeout=T) == b"3"
    _eventually(lambda: _handled(observability, "Count", "OK", "client_stream") == 1, "the client stream is counted")


def test_the_servers_span_is_current_in_the_servicer_and_child_of_the_clients(
    probe: tuple[Observability, grpc.Channel], spans: InMemorySpanExporter
) -> None:
    _, channel = probe
    seen = channel.unary_unary(f"/{SERVICE}/Span")(b"", timeout=T).decode()
    streamed = next(iter(channel.unary_stream(f"/{SERVICE}/Endless")(b"", timeout=0.5)))

    def ended() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if format(s.context.span_id, "016x") in (seen, streamed.decode())]

    _eventually(lambda: len(ended()) == 2, "both server spans end")
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    for server_span in ended():
        assert server_span.kind == trace.SpanKind.SERVER
        assert server_span.parent is not None
        client_span = by_id[server_span.parent.span_id]
        assert client_span.kind == trace.SpanKind.CLIENT and client_span.name == server_span.name
        assert client_span.context.trace_id == server_span.context.trace_id
        assert server_span.attributes is not None and server_span.attributes["rpc.service"] == SERVICE


def test_span_status_follows_the_rpc_conventions(probe: tuple[Observability, grpc.Channel],
                                                 spans: InMemorySpanExporter) -> None:
    _, channel = probe
    for method in ("Abort", "Raise"):
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=T)

    def ended(name: str, kind: trace.SpanKind) -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.name == f"{SERVICE}/{name}" and s.kind == kind]

    _eventually(lambda: bool(ended("Raise", trace.SpanKind.SERVER)), "the server span ends")
    aborted, raised = ended("Abort", trace.SpanKind.SERVER)[-1], ended("Raise", trace.SpanKind.SERVER)[-1]
    # NOT_FOUND is the caller's doing: an error for the client only; UNKNOWN is the server's.
    assert aborted.attributes is not None and aborted.attributes["rpc.grpc.status_code"] == 5
    assert aborted.status.status_code == trace.StatusCode.UNSET
    assert ended("Abort", trace.SpanKind.CLIENT)[-1].status.status_code == trace.StatusCode.ERROR
    assert raised.status.status_code == trace.StatusCode.ERROR


def test_metrics_alone_install_no_tracing() -> None:
    observability = Observability("plain", "127.0.0.1:0")
    channel = grpc.insecure_channel("127.0.0.1:1")
    assert observability.channel(channel) is channel
    assert len(observability.interceptors()) == 1
    assert Observability("off").interceptors() == []


def test_concurrent_calls_each_get_their_own_span(probe: tuple[Observability, grpc.Channel]) -> None:
    _, channel = probe
    span = channel.unary_unary(f"/{SERVICE}/Span")
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(span(b"", timeout=T))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 8
