"""Scroll cursors: where a page ended, tied to the collection it came from.

A cursor is the last id returned, with the collection's name, as URL-safe base64 of a small
JSON object. Keyset paging (``id > after``) is what keeps pages correct while writes go on;
the name lets a cursor from another collection be refused instead of silently paging there.
"""

from __future__ import annotations

import base64
import binascii
import json

from clipsearch.errors import InvalidArgumentError

_VERSION = 1
#: Longest cursor accepted (one holds an id of at most 512 bytes and a collection name).
MAX_CURSOR_CHARS = 2048


def encode(collection: str, after: str) -> str:
    text = json.dumps({"v": _VERSION, "c": collection, "a": after}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode(cursor: str, collection: str) -> str:
    """The id a page starts after ("" for the first page); INVALID_ARGUMENT naming ``cursor``."""
    if not cursor:
        return ""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidArgumentError(f"cursor: at most {MAX_CURSOR_CHARS} characters", field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
        version, owner, after = data["v"], data["c"], data["a"]
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidArgumentError(
            "cursor: not a cursor of this service (pass next_cursor of the previous page as it came)",
            field="cursor",
        ) from None
    if version != _VERSION or not isinstance(after, str) or not isinstance(owner, str):
        raise InvalidArgumentError("cursor: not a cursor of this service version", field="cursor")
    if owner != collection:
        raise InvalidArgumentError(
            f"cursor: it pages collection {owner!r}, not {collection!r} (start again without a cursor)",
            field="cursor",
        )
    return after
