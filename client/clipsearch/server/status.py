"""Domain errors -> gRPC status with ``google.rpc`` details (the server half).

INVALID_ARGUMENT carries a ``BadRequest`` naming the field; RESOURCE_EXHAUSTED
and UNAVAILABLE carry a ``RetryInfo``. Clients in any language can read them; the
Python SDK turns them back with :func:`clipsearch._calls.from_rpc_error`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from clipsearch.errors import ClipsearchError, InternalError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def to_status(error: ClipsearchError) -> grpc.Status:
    details = []
    if error.field is not None:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
            ]
        )
        details.append(_pack(bad_request))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    proto = status_pb2.Status(code=error.code.value, message=error.message, details=details)
    return rpc_status.to_status(proto)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def map_errors(method: F) -> F:
    """Decorates an async servicer method: domain errors become precise statuses.

    Anything unexpected is logged with its traceback and becomes INTERNAL with a
    generic message, so no stack trace or internal detail reaches a client.
    """

    async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        # abort_with_status exists on grpc.aio.ServicerContext but is missing from grpc-stubs.
        if isinstance(exc, ClipsearchError):
            await context.abort_with_status(to_status(exc))  # type: ignore[attr-defined]
        log.exception("unhandled error in %s", method.__qualname__)
        internal = to_status(InternalError("internal server error"))
        await context.abort_with_status(internal)  # type: ignore[attr-defined]

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as exc:
                if _is_abort(exc):
                    raise
                await _abort(context, exc)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc)

    return wrapper  # type: ignore[return-value]


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError) or type(exc).__name__ == "AbortError"
