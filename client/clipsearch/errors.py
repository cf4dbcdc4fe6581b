"""One exception hierarchy for the whole product.

The service cores raise these (they know nothing of gRPC, and this module imports no
gRPC); the server kit turns them into a gRPC status with ``google.rpc`` details
(:mod:`clipsearch.server.status`), and the SDK turns that status back into the same
class (:mod:`clipsearch._calls`). So ``except clipsearch.NotFoundError`` works the same
in-process, against the pair, and against the gateway.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable


class StatusCode(enum.Enum):
    """The canonical status codes (``google.rpc.Code``): the numbers every gRPC language uses."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def of(cls, number: int) -> StatusCode:
        """The code with this number; UNKNOWN for a number outside the canonical set."""
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN


class ClipsearchError(Exception):
    """Base class. ``code`` is the status code the error travels as."""

    code: StatusCode = StatusCode.UNKNOWN

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
    code = StatusCode.INVALID_ARGUMENT


class NotFoundError(ClipsearchError, LookupError):
    code = StatusCode.NOT_FOUND


class AlreadyExistsError(ClipsearchError):
    code = StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ClipsearchError):
    """E.g. vectors from a different model than the collection was built for."""

    code = StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(ClipsearchError):
    """The server is full; retry after ``retry_after_s``."""

    code = StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(ClipsearchError, TimeoutError):
    code = StatusCode.DEADLINE_EXCEEDED


class UnavailableError(ClipsearchError, ConnectionError):
    code = StatusCode.UNAVAILABLE


class UnauthenticatedError(ClipsearchError):
    code = StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ClipsearchError):
    code = StatusCode.PERMISSION_DENIED


class CancelledError(ClipsearchError):
    code = StatusCode.CANCELLED


class InternalError(ClipsearchError):
    code = StatusCode.INTERNAL


class UnimplementedError(ClipsearchError):
    """The server does not offer this call (e.g. the cluster mode, for a call it cannot do as one)."""

    code = StatusCode.UNIMPLEMENTED


class DataLossError(ClipsearchError):
    """Stored data failed its checksum: corrupt on disk, refused rather than served."""

    code = StatusCode.DATA_LOSS


_BY_CODE: dict[StatusCode, type[ClipsearchError]] = {
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
        UnimplementedError,
    )
}


def error_class_for(code: StatusCode) -> type[ClipsearchError]:
    return _BY_CODE.get(code, ClipsearchError)


def error_for(code: StatusCode, message: str, **details: object) -> ClipsearchError:
    """An error of the class that ``code`` travels as, carrying that exact code."""
    error = error_class_for(code)(message or code.name, **details)  # type: ignore[arg-type]
    error.code = code
    return error


def renumbered(error: ClipsearchError, prefix: str, position: Callable[[int], int]) -> ClipsearchError:
    """``error`` with ``prefix[i]`` rewritten to ``prefix[position(i)]`` in its field and message.

    A request split into pieces (chunks of inputs, items per shard group) is checked piece
    by piece; the caller must still hear which element of *its* request was at fault.
    """
    pattern = re.compile(re.escape(prefix) + r"\[(\d+)\]")

    def fix(text: str) -> str:
        return pattern.sub(lambda m: f"{prefix}[{position(int(m.group(1)))}]", text)

    fixed = error_for(
        error.code,
        fix(error.message),
        retry_after_s=error.retry_after_s,
        field=fix(error.field) if error.field else None,
    )
    return fixed
