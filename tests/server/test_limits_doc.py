"""docs/reliability.md lists a bound for every field of every request (issue item 1's class).

A field added to a request message without a documented bound fails here: the table is
where an operator and a caller learn what one request may ask, and each row names the
code (or the flag) that enforces it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from clipsearch.v1 import encoder_pb2, index_pb2, search_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def request_fields() -> set[str]:
    """``Message.field`` of every string, bytes, number or repeated field a request can hold."""
    found: set[str] = set()
    seen: set[str] = set()

    def walk(message: Descriptor) -> None:
        if message.full_name in seen:
            return
        seen.add(message.full_name)
        for field in message.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.is_repeated:
                    found.add(f"{message.name}.{field.name}")
                walk(field.message_type)
            elif (
                field.type not in (FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM) or field.is_repeated
            ):
                found.add(f"{message.name}.{field.name}")

    for module in (encoder_pb2, index_pb2, search_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                walk(method.input_type)
    return found


def test_every_request_field_has_a_documented_bound() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text()
    limits = text[text.index("## Limits") :]
    limits = limits[: limits.index("\n## ", 1)] if "\n## " in limits[1:] else limits
    missing = sorted(path for path in request_fields() if f"`{path}`" not in limits)
    assert not missing, f"docs/reliability.md ## Limits lacks: {missing}"
