"""One exception hierarchy for the whole product.

The service cores raise these (they know nothing of gRPC); the server adapter
turns them into a gRPC status with ``google.rpc`` details, and the SDK turns that
status back into the same class. So ``except clipsearch.NotFoundError`` works the
same in-process, against the pair, and against the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2, status_pb2


class ClipsearchError(Exception):
    """Base class. ``code`` is the gRPC status code the error travels as."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        #: The request field at fault (``inputs[3].image``), for INVALID_ARGUMENT.
        self.field = field
        #: Server's hint before retrying, for RESOURCE_EXHAUSTED / UNAVAILABLE.
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ClipsearchError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ClipsearchError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ClipsearchError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ClipsearchError):
    """E.g. vectors from a different model than the collection was built for."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(ClipsearchError):
    """The server is full; retry after ``retry_after_s``."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(ClipsearchError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(ClipsearchError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(ClipsearchError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ClipsearchError):
    code = grpc.StatusCode.PERMISSION_DENIED


class CancelledError(ClipsearchError):
    code = grpc.StatusCode.CANCELLED


class InternalError(ClipsearchError):
    code = grpc.StatusCode.INTERNAL


class DataLossError(ClipsearchError):
    """Stored data failed its checksum: corrupt on disk, refused rather than served."""

    code = grpc.StatusCode.DATA_LOSS


_BY_CODE: dict[grpc.StatusCode, type[ClipsearchError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        ResourceExhaustedError,
        DeadlineExceededError,
        UnavailableError,
        UnauthenticatedError,
        PermissionDeniedError,
        CancelledError,
        InternalError,
        DataLossError,
    )
}


def error_class_for(code: grpc.StatusCode) -> type[ClipsearchError]:
    return _BY_CODE.get(code, ClipsearchError)


def from_rpc_error(error: grpc.RpcError) -> ClipsearchError:
    """Turns a failed call (sync or aio) into the matching :class:`ClipsearchError`."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    field = None
    retry_after = None
    status = _status_from_trailers(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                if bad_request.field_violations:
                    field = bad_request.field_violations[0].field
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry_after = info.retry_delay.ToMilliseconds() / 1000.0
    cls = error_class_for(code)
    result = cls(message or code.name, field=field, retry_after_s=retry_after)
    result.code = code
    return result


def _status_from_trailers(error: grpc.RpcError) -> status_pb2.Status | None:
    # grpc-stubs types these as ``_Metadatum`` objects; at runtime they are (key, value) pairs.
    trailers = cast(
        "Iterable[tuple[str, Any]] | None",
        error.trailing_metadata() if hasattr(error, "trailing_metadata") else None,
    )
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.MergeFromString(value)
            return status
    return None
