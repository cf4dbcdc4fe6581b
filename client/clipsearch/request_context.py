"""The request id that follows one search through the SDK, the gateway and both services.

The SDK sends ``x-request-id`` with every call (a fresh id, or the one of the
server call it is made from, so a gateway's upstream calls carry its caller's
id); servers put it in every log line of that call.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator

REQUEST_ID_HEADER = "x-request-id"
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def outgoing_request_id() -> str:
    return current_request_id.get() or new_request_id()


@contextlib.contextmanager
def one_request_id() -> Iterator[str]:
    """Makes every call inside share one request id (the current one, or a new one).

    A composed search (encode, then search) is one request to follow in the logs.
    """
    existing = current_request_id.get()
    if existing:
        yield existing
        return
    token = current_request_id.set(new_request_id())
    try:
        yield current_request_id.get() or ""
    finally:
        current_request_id.reset(token)
