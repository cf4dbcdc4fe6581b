"""Reads product catalogs: CSV or JSON Lines, as shops write them.

Each row needs ``id`` and ``image``. The id is kept exactly as written (``0042`` stays
``0042``; a JSON number id keeps its digits as written). ``image`` is a path relative to the
catalog file (or to a declared image root), an absolute path, or an http(s) URL, kept as
written so catalogs and their images can move. Every other column is a metadata cell: text
for CSV (parsed later by its field's type, see :mod:`clipsearch.cells`), a JSON value for
JSONL. Empty cells are absent values. CSV files may start with a byte-order mark (Excel).
A row that cannot be read (no id, bad JSON, too many cells) is marked, never fatal.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsearch.errors import InvalidArgumentError

REQUIRED_COLUMNS = ("id", "image")
FORMATS = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class CatalogRow:
    #: 1-based row number in the file (header excluded), for error reports.
    row: int
    id: str
    #: The image location as written: a relative or absolute path, or a URL.
    image: str
    #: Every other column with a value: text (CSV) or a JSON value (JSONL).
    cells: dict[str, Any] = field(default_factory=dict)
    #: The row as read, every column (for the failed-rows file).
    record: dict[str, Any] = field(default_factory=dict)
    #: Why the row cannot be ingested (empty id, bad JSON...); such rows are reported, not fatal.
    error: str | None = None


def check_catalog(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"catalog {path} does not exist (or is not a file)", field="catalog")
    if path.suffix.lower() not in FORMATS:
        raise InvalidArgumentError(f"catalog {path}: expected a .csv or .jsonl file", field="catalog")
    return path


def read_catalog(path: str | Path) -> Iterator[CatalogRow]:
    """Yields rows lazily, so catalogs of any size stream through."""
    path = check_catalog(path)
    records = _csv_records(path) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    for number, record, error in records:
        yield _to_row(number, record, error)


def columns(path: str | Path) -> list[str]:
    """The catalog's column names (CSV header; JSONL: the keys of the first rows)."""
    path = check_catalog(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _header(csv.reader(handle), path)
    names: dict[str, None] = {}
    for _, record, _ in _jsonl_records(path, limit=1000):
        names.update(dict.fromkeys(record))
    return list(names)


def _header(reader: Any, path: Path) -> list[str]:
    header = [name.strip() for name in next(reader, [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidArgumentError(
            f"catalog {path}: missing columns {missing} (the header is {header})", field="catalog"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InvalidArgumentError(f"catalog {path}: columns {repeated} appear twice", field="catalog")
    return header


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path)
        try:
            for number, cells in enumerate(reader, start=1):
                if not cells:
                    continue
                record = dict(zip(header, cells, strict=False))
                error = None
                if len(cells) > len(header):
                    error = f"{len(cells)} cells but {len(header)} columns (a comma inside an unquoted cell?)"
                yield number, record, error
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(
                f"catalog {path}: not UTF-8 (byte {exc.start}: {exc.reason}); save it as UTF-8",
                field="catalog",
            ) from None


class _NumberText(str):
    """A JSON number token, kept as written (an id of 0.50 stays '0.50')."""

    def value(self) -> int | float:
        return int(self) if self.lstrip("-").isdigit() else float(self)


_DECODER = json.JSONDecoder(parse_int=_NumberText, parse_float=_NumberText)


def _jsonl_records(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    with path.open(encoding="utf-8-sig") as handle:
        number = 0
        for line in handle:
            if not line.strip():
                continue
            number += 1
            if limit is not None and number > limit:
                return
            try:
                record = _DECODER.decode(line)
            except json.JSONDecodeError as error:
                yield number, {}, f"invalid JSON ({error.msg})"
                continue
            if not isinstance(record, dict):
                yield number, {}, "expected a JSON object"
                continue
            yield number, {key: _plain(value) for key, value in record.items()} | _ids(record), None


def _plain(value: Any) -> Any:
    """JSON values as Python values (numbers parsed, containers walked)."""
    if isinstance(value, _NumberText):
        return value.value()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _ids(record: dict[str, Any]) -> dict[str, Any]:
    """The id as written: a JSON number keeps its digits."""
    value = record.get("id")
    return {"id": str(value)} if isinstance(value, _NumberText) else {}


def _to_row(number: int, record: dict[str, Any], error: str | None) -> CatalogRow:
    raw_id = record.get("id")
    item_id = raw_id if isinstance(raw_id, str) else "" if raw_id is None else json.dumps(raw_id)
    image = record.get("image")
    if error is None and not isinstance(raw_id, (str, type(None))):
        error = f"id must be a string or a number, got {json.dumps(raw_id)[:40]}"
    if error is None and not item_id.strip():
        error = "empty id"
    if error is None and not (isinstance(image, str) and image.strip()):
        error = "empty image" if not image else "image must be a path or URL string"
    cells = {
        key: value
        for key, value in record.items()
        if key not in REQUIRED_COLUMNS and value is not None and value != "" and key is not None
    }
    return CatalogRow(
        row=number,
        id=item_id,
        image=image.strip() if isinstance(image, str) else "",
        cells=cells,
        record=record,
        error=error,
    )
