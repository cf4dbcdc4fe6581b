"""Reads product catalogs: CSV or JSON Lines.

Each row needs ``id`` and ``image`` (a file path, relative to the catalog file or
absolute). Every other column becomes metadata; in CSV, cells that look like
numbers or booleans become numbers or booleans. The absolute image path is kept
as metadata ``image`` so result pages can show the picture.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import InvalidArgumentError
from clipsearch.wire import MetadataScalar

REQUIRED_COLUMNS = ("id", "image")


@dataclass(frozen=True)
class CatalogRow:
    #: 1-based row number in the file (header excluded), for error reports.
    row: int
    id: str
    image_path: Path
    metadata: dict[str, MetadataScalar]
    #: Why the row cannot be ingested (empty id, bad JSON...); such rows are reported, not fatal.
    error: str | None = None


def read_catalog(path: str | Path) -> Iterator[CatalogRow]:
    """Yields rows lazily, so catalogs of any size stream through."""
    path = Path(path)
    if not path.exists():
        raise InvalidArgumentError(f"catalog {path} does not exist", field="catalog")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _csv_records(path)
    elif suffix in (".jsonl", ".ndjson"):
        records = _jsonl_records(path)
    else:
        raise InvalidArgumentError(f"catalog {path}: expected a .csv or .jsonl file", field="catalog")
    base = path.resolve().parent
    for number, record in records:
        yield _to_row(number, record, base)


def _csv_records(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidArgumentError(f"catalog {path}: missing columns {missing}", field="catalog")
        for number, record in enumerate(reader, start=1):
            yield number, {key: _parse_cell(value) for key, value in record.items() if key is not None}


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as handle:
        number = 0
        for line in handle:
            if not line.strip():
                continue
            number += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                record = {"__error__": f"invalid JSON ({error.msg})"}
            if not isinstance(record, dict):
                record = {"__error__": "expected a JSON object"}
            yield number, record


def _parse_cell(value: str | None) -> MetadataScalar | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _to_row(number: int, record: dict, base: Path) -> CatalogRow:
    item_id = "" if record.get("id") is None else str(record["id"])
    image = record.get("image")
    error = record.get("__error__")
    if error is None and not item_id:
        error = "empty id"
    if error is None and not image:
        error = "empty image"
    if error is not None:
        return CatalogRow(row=number, id=item_id, image_path=Path(), metadata={}, error=error)
    image_path = Path(str(image))
    if not image_path.is_absolute():
        image_path = base / image_path
    metadata: dict[str, MetadataScalar] = {
        key: value
        for key, value in record.items()
        if key not in REQUIRED_COLUMNS and isinstance(value, (str, int, float, bool))
    }
    metadata["image"] = str(image_path)
    return CatalogRow(row=number, id=item_id, image_path=image_path, metadata=metadata)
