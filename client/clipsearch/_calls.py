"""What the per-service clients share: channel ownership and gRPC errors -> clipsearch errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from clipsearch.channel import ChannelOptions, open_aio_channel, open_channel, resolve_address
from clipsearch.errors import ClipsearchError, StatusCode, error_for


@contextlib.contextmanager
def translate_errors(client: _ChannelOwner | None = None) -> Iterator[None]:
    """gRPC errors of the block become :mod:`clipsearch.errors`; ``client`` names the service in
    the errors a person must act on (nothing listening, another service at that address)."""
    try:
        yield
    except grpc.RpcError as error:
        translated = from_rpc_error(error)
        raise (translated if client is None else client._explained(translated)) from None


#: How the channel reports that nothing answered at the address (grpc core's wording).
_UNREACHABLE = (
    "failed to connect to all addresses",
    "Connection refused",
    "DNS resolution failed",
    "No route",
)


def from_rpc_error(error: grpc.RpcError) -> ClipsearchError:
    """Turns a failed call (sync or aio) into the matching :class:`ClipsearchError`."""
    code = StatusCode[error.code().name] if hasattr(error, "code") else StatusCode.UNKNOWN
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
    return error_for(code, message or "", field=field, retry_after_s=retry_after)


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


def chunks(count: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(count)`` in pieces of at most ``size``."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


class _ChannelOwner:
    """Address, timeout and channel of a per-service client (sync or asyncio).

    The address is the one given, else ``$<ADDRESS_ENV>``, else ``DEFAULT_ADDRESS``; a
    channel passed in is used and left open, otherwise the client opens and closes its own.
    """

    ADDRESS_ENV: str
    DEFAULT_ADDRESS: str
    #: ("encoder", "clipsearch.v1.EncoderService"): for errors that name what is at fault.
    SERVICE: tuple[str, str]
    _open_channel: Callable[[str, ChannelOptions | None], Any]

    def __init__(
        self, address: str | None, *, timeout_s: float, options: ChannelOptions | None, channel: Any
    ):
        self.address = resolve_address(address, self.ADDRESS_ENV, self.DEFAULT_ADDRESS)
        self.timeout_s = timeout_s
        self._owns_channel = channel is None
        self._channel = channel or type(self)._open_channel(self.address, options)

    def _explained(self, error: ClipsearchError) -> ClipsearchError:
        """``error`` with one sentence that names this service, its address and the fix, where a
        person must act: nothing listening there, or another service listening there."""
        name, full_name = self.SERVICE
        flag = f"--{name} (or ${self.ADDRESS_ENV})"
        if error.code is StatusCode.UNAVAILABLE and any(text in error.message for text in _UNREACHABLE):
            reason = error.message.rsplit(":", 1)[-1].strip() or "nothing answered"
            return error_for(
                error.code,
                f"the {name} at {self.address} is not reachable ({reason}): start it "
                f"(`clipsearch serve {name}`) or point {flag} at it",
                retry_after_s=error.retry_after_s,
            )
        if error.code is StatusCode.UNIMPLEMENTED:
            return error_for(
                error.code,
                f"the server at {self.address} does not serve {full_name} ({error.message}): "
                f"{flag} points at another service",
            )
        return error


class ServiceClient(_ChannelOwner):
    """Channel ownership of the sync clients: open, close, ``with``."""

    _open_channel = staticmethod(open_channel)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServiceClient(_ChannelOwner):
    """Channel ownership of the asyncio clients: open, close, ``async with``."""

    _open_channel = staticmethod(open_aio_channel)

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close(grace=None)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
