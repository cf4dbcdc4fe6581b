"""Reads product catalogs: CSV or JSON Lines, as shops write them.

Each row needs ``id`` and ``image`` (or ``images``). The id is kept exactly as written
(``0042`` stays ``0042``; a JSON number id keeps its digits as written). An image is a path
relative to the catalog file (or to a declared image root), an absolute path, or an http(s)
URL, kept as written so catalogs and their images can move. Every other column is a
metadata cell: text for CSV (parsed later by its field's type, see :mod:`clipsearch.cells`),
a JSON value for JSONL. Empty cells are absent values. CSV files may start with a
byte-order mark (Excel). A row that cannot be read (no id, bad JSON, too many cells) is
marked, never fatal.

A product with several images lists them in an ``images`` column (a JSON list, or one CSV
cell separated like keywords: ``a.jpg|b.jpg``), or on consecutive rows that repeat its id,
as shop exports do (Shopify: one row per image, the other cells empty on the extra rows).
:func:`read_products` merges those rows; a repeated row whose cells disagree with the
first is reported, not merged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clipsearch.errors import InvalidArgumentError

#: Columns that hold images, not metadata (a catalog needs id and one of the image columns).
IMAGE_COLUMNS = ("image", "images")
FORMATS = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class CatalogRow:
    #: 1-based row number in the file (header excluded), for error reports.
    row: int
    id: str
    #: The (first) image location as written: a relative or absolute path, or a URL.
    image: str
    #: Every other column with a value: text (CSV) or a JSON value (JSONL).
    cells: dict[str, Any] = field(default_factory=dict)
    #: The row as read, every column (for the failed-rows file).
    record: dict[str, Any] = field(default_factory=dict)
    #: Why the row cannot be ingested (empty id, bad JSON...); such rows are reported, not fatal.
    error: str | None = None
    #: Every image of the product, in order (``image`` first); one for a plain row.
    images: tuple[str, ...] = ()
    #: Row numbers merged into this product after its first (rows repeating its id).
    merged_rows: tuple[int, ...] = ()


def check_catalog(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"catalog {path} does not exist (or is not a file)", field="catalog")
    if path.suffix.lower() not in FORMATS:
        raise InvalidArgumentError(f"catalog {path}: expected a .csv or .jsonl file", field="catalog")
    return path


def read_catalog(path: str | Path, *, list_separator: str = "|") -> Iterator[CatalogRow]:
    """Yields rows lazily, so catalogs of any size stream through."""
    path = check_catalog(path)
    records = _csv_records(path) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    for number, record, error in records:
        yield _to_row(number, record, error, list_separator)


def read_products(path: str | Path, *, list_separator: str = "|") -> Iterator[CatalogRow]:
    """Rows with consecutive repeats of an id merged into one product (its images in order).

    A repeated row may leave cells empty (they are the first row's) or repeat them; a cell
    that differs, or an image the product already has, makes that row a failure of its own
    (its error names the first row), and the product keeps what it had.
    """
    current: CatalogRow | None = None
    for row in read_catalog(path, list_separator=list_separator):
        if row.error is None and current is not None and row.id == current.id:
            merged = _merge(current, row)
            if isinstance(merged, str):
                yield replace(row, error=merged)
            else:
                current = merged
            continue
        if current is not None:
            yield current
        current = row if row.error is None else None
        if row.error is not None:
            yield row
    if current is not None:
        yield current


def _merge(product: CatalogRow, row: CatalogRow) -> CatalogRow | str:
    """The product with the row's images, or why the row cannot join it."""
    for name, value in row.cells.items():
        if name in product.cells and product.cells[name] != value:
            return (
                f"duplicate id (row {product.row}) with another {name} ({value!r}, row {product.row} "
                f"has {product.cells[name]!r}): rows repeating a product's id add images; their "
                "other cells must be empty or equal"
            )
    repeated = [image for image in row.images if image in product.images]
    if repeated:
        return f"duplicate id (row {product.row}) with the same image {repeated[0]!r}"
    cells = {**row.cells, **product.cells}
    return replace(
        product,
        cells=cells,
        images=product.images + row.images,
        merged_rows=(*product.merged_rows, row.row),
    )


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
    missing = ["id"] if "id" not in header else []
    if not any(column in header for column in IMAGE_COLUMNS):
        missing.append("image")
    if missing:
        raise InvalidArgumentError(
            f"catalog {path}: missing columns {missing} (the header is {header}; images go in an "
            "'image' column, or several in an 'images' column)",
            field="catalog",
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


def _to_row(number: int, record: dict[str, Any], error: str | None, list_separator: str = "|") -> CatalogRow:
    raw_id = record.get("id")
    item_id = raw_id if isinstance(raw_id, str) else "" if raw_id is None else json.dumps(raw_id)
    if error is None and not isinstance(raw_id, (str, type(None))):
        error = f"id must be a string or a number, got {json.dumps(raw_id)[:40]}"
    if error is None and not item_id.strip():
        error = "empty id"
    images, image_error = _images(record, list_separator)
    if error is None and image_error is not None:
        error = image_error
    cells = {
        key: value
        for key, value in record.items()
        if key not in ("id", *IMAGE_COLUMNS) and value is not None and value != "" and key is not None
    }
    return CatalogRow(
        row=number,
        id=item_id,
        image=images[0] if images else "",
        cells=cells,
        record=record,
        error=error,
        images=tuple(images),
    )


def _images(record: dict[str, Any], separator: str) -> tuple[list[str], str | None]:
    """The row's image locations (``image``, then ``images``), or why they cannot be read."""
    found: list[str] = []
    image = record.get("image")
    if image not in (None, ""):
        if not isinstance(image, str) or not image.strip():
            return [], "image must be a path or URL string"
        found.append(image.strip())
    listed = record.get("images")
    if isinstance(listed, str):
        listed = [part for part in listed.split(separator)] if listed.strip() else []
    if listed not in (None, ""):
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            return [], "images must be a list of paths or URLs (CSV: separated by the list separator)"
        found += [v.strip() for v in listed if v.strip()]
    if not found:
        return [], "empty image"
    unique = list(dict.fromkeys(found))
    if len(unique) < len(found):
        repeated = next(v for v in found if found.count(v) > 1)
        return [], f"the image {repeated!r} is listed twice"
    return unique, None
