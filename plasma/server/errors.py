"""Domain errors and their translation to gRPC status codes.

Servicer methods raise these (or TensorError/BlobError) with a message a person can act on;
`translate_errors` turns them into the precise status, so handlers stay free of abort plumbing.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import grpc

from plasma import log as plog
from plasma.blobs import BadHeader, BlobError
from plasma.tensors import TensorError

log = plog.get(__name__)


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
    if isinstance(exc, TensorError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, BadHeader):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, BlobError):
        return grpc.StatusCode.DATA_LOSS, str(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        # An upstream service failed: pass its status on, naming where it came from.
        return exc.code(), f"upstream call failed: {exc.details()}"
    return None


F = TypeVar("F", bound=Callable[..., Any])


class _StatusContext(Protocol):
    """grpc.ServicerContext.code() (grpc >= 1.38), the status set so far, which types-grpcio does not declare."""

    def code(self) -> grpc.StatusCode | None: ...


def _status_set(context: grpc.ServicerContext) -> bool:
    """Whether the handler already set a status (context.abort raised the RpcError being handled)."""
    return cast(_StatusContext, context).code() is not None


def translate_errors(method: F) -> F:
    """Wraps a unary or server-streaming servicer method so domain errors become gRPC statuses."""

    def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
        mapped = status_for(exc)
        if mapped is None:
            log.exception("unhandled error in %s", method.__qualname__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        else:
            context.abort(*mapped)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                if isinstance(exc, grpc.RpcError) and _status_set(context):
                    raise  # context.abort already ran
                _abort(context, exc)

        return cast(F, stream_wrapper)

    @functools.wraps(method)
    def unary_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) and _status_set(context):
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
