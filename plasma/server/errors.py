"""Domain errors and their translation to gRPC status codes.

Servicer methods raise these (or TensorError/BlobError/InvalidId) with a message a person can act on;
`translate_errors` turns them into the precise status, so handlers stay free of abort plumbing.

What a client reads is bounded and reveals nothing of the server: every message is cut to MAX_DETAILS_CHARS and
absolute paths in it become "<path>"; an unexpected exception answers INTERNAL with only a reference that the
server's log line (with the traceback) carries too.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import grpc

from plasma import log as plog
from plasma.blobs import BadHeader, BlobError
from plasma.ids import InvalidId
from plasma.quoting import truncate
from plasma.tensors import TensorError

log = plog.get(__name__)

# Far above any message the servers write themselves, far below grpc's 8 KiB metadata limit on the client.
MAX_DETAILS_CHARS = 1024
# An absolute path (or ~/...), not a URL's "//" and not a slash inside a word ("letters/digits", "3/4").
_PATH = re.compile(r"(?:(?<=unix:)|(?<![\w.:/~-]))~?/(?!/)[^\s'\",;)\]}]+")


class PlasmaError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(PlasmaError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(PlasmaError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(PlasmaError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(PlasmaError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(PlasmaError):
    code = grpc.StatusCode.DATA_LOSS


class PermissionDenied(PlasmaError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(PlasmaError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(PlasmaError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Aborted(PlasmaError):
    code = grpc.StatusCode.ABORTED


class Cancelled(PlasmaError):
    code = grpc.StatusCode.CANCELLED


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, PlasmaError):
        return exc.code, str(exc)
    if isinstance(exc, (TensorError, InvalidId)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, BadHeader):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, BlobError):
        return grpc.StatusCode.DATA_LOSS, str(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        # An upstream service failed: pass its status on, naming where it came from (client_details: the
        # channel's own errors may name a socket path).
        return exc.code(), f"upstream call failed: {client_details(exc.details() or '')}"
    return None


def client_details(message: str) -> str:
    """What a client may read of `message`: absolute paths replaced, at most MAX_DETAILS_CHARS."""
    return truncate(_PATH.sub("<path>", message), MAX_DETAILS_CHARS)


F = TypeVar("F", bound=Callable[..., Any])


class _StatusContext(Protocol):
    """grpc.ServicerContext.code() (grpc >= 1.38), the status set so far, which types-grpcio does not declare."""

    def code(self) -> grpc.StatusCode | None: ...


def _status_set(context: grpc.ServicerContext) -> bool:
    """Whether the call already has its status: context.abort raised the exception being handled (grpcio raises
    a bare Exception there), e.g. from plasma.server.parsing's check of a streamed request."""
    return cast(_StatusContext, context).code() is not None


def _client_gone(context: grpc.ServicerContext) -> bool:
    """Whether the call ended before the method did (cancelled by its client, past its deadline): then the
    exception is usually the request iterator's grpc.RpcError, which grpcio recognizes as its own and does not
    log; anything else grpcio logs with its traceback. Either way no status can reach the client."""
    return not context.is_active()


def translate_errors(method: F) -> F:
    """Wraps a unary or server-streaming servicer method so domain errors become gRPC statuses."""

    def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
        mapped = status_for(exc)
        if mapped is None:
            reference = uuid.uuid4().hex[:12]
            log.exception("internal error reference=%s method=%s", reference, method.__qualname__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error (reference {reference}); the server's log has the details")
        else:
            code, message = mapped
            context.abort(code, client_details(message))

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                if _status_set(context) or _client_gone(context):
                    raise  # context.abort already ran, or there is nobody to answer
                _abort(context, exc)

        return cast(F, stream_wrapper)

    @functools.wraps(method)
    def unary_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            if _status_set(context) or _client_gone(context):
                raise
            _abort(context, exc)

    return cast(F, unary_wrapper)


@contextlib.contextmanager
def bad_input() -> Iterator[None]:
    """Inside this block a ValueError from validation code is the caller's bad input: INVALID_ARGUMENT."""
    try:
        yield
    except PlasmaError:
        raise
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
