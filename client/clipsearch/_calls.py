"""Turns failed gRPC calls into :mod:`clipsearch.errors` exceptions (shared by the clients)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

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
