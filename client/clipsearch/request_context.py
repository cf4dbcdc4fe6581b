"""The request id that follows one search through the SDK, the gateway and both services.

The SDK sends ``x-request-id`` with every call (a fresh id, or the one of the
server call it is made from, so a gateway's upstream calls carry its caller's
id); servers put it in every log line of that call.
"""

from __future__ import annotations

import contextvars
import uuid

REQUEST_ID_HEADER = "x-request-id"
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def outgoing_request_id() -> str:
    return current_request_id.get() or new_request_id()
