"""What the per-service clients share: channel ownership and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from clipsearch.channel import ChannelOptions, open_channel
from clipsearch.errors import from_rpc_error


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None


def chunks(count: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(count)`` in pieces of at most ``size``."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


class ServiceClient:
    """Channel ownership shared by the per-service clients: open, close, ``with``."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float,
        options: ChannelOptions | None,
        channel: grpc.Channel | None,
    ):
        self.address = address
        self.timeout_s = timeout_s
        self._owns_channel = channel is None
        self._channel = channel or open_channel(address, options)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
