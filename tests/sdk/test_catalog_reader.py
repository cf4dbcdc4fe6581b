"""Catalogs as shops write them: ids kept byte for byte, cells kept as written until typed."""

import json
from pathlib import Path

import pytest

from clipsearch.catalog import columns, read_catalog
from clipsearch.errors import InvalidArgumentError

pytestmark = pytest.mark.unit


def test_csv_ids_and_cells_are_kept_as_written(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "\ufeffid,image, price ,in_stock,sku\n"  # Excel's byte-order mark, a padded header
        "0042,img/a.jpg,$16.99,yes,007\n"
        "42,https://cdn.example.com/b.jpg,,no,\n"
        "1.50,/abs/c.png,3,TRUE,x\n"
        "TRUE,d.jpg,1e3,,y\n",
        encoding="utf-8",
    )
    rows = list(read_catalog(catalog))
    assert [r.id for r in rows] == ["0042", "42", "1.50", "TRUE"]
    assert [r.image for r in rows] == ["img/a.jpg", "https://cdn.example.com/b.jpg", "/abs/c.png", "d.jpg"]
    assert rows[0].cells == {"price": "$16.99", "in_stock": "yes", "sku": "007"}
    assert rows[1].cells == {"in_stock": "no"}  # empty cells are absent values
    assert all(r.error is None for r in rows)
    assert columns(catalog) == ["id", "image", "price", "in_stock", "sku"]


def test_jsonl_numbers_keep_their_digits_as_ids(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        '{"id": 1.50, "image": "a.png", "price": 3, "tags": ["x"]}\n{"id": 42, "image": "b.png"}\n'
    )
    rows = list(read_catalog(catalog))
    assert [r.id for r in rows] == ["1.50", "42"]
    assert rows[0].cells == {"price": 3, "tags": ["x"]}


def test_jsonl_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.jsonl"
    lines = [
        json.dumps({"id": "a", "image": "/abs/a.png", "title": "A", "tags": ["x"]}),
        "{not json",
        json.dumps({"id": "", "image": "b.png"}),
        json.dumps({"id": "c"}),
        "",
        json.dumps([1, 2]),
        json.dumps({"id": {"x": 1}, "image": "d.png"}),
    ]
    catalog.write_text("\n".join(lines) + "\n")
    rows = list(read_catalog(catalog))
    assert [r.row for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].error is None and rows[0].cells == {"title": "A", "tags": ["x"]}
    assert rows[1].error.startswith("invalid JSON")
    assert rows[2].error == "empty id"
    assert rows[3].error == "empty image"
    assert rows[4].error == "expected a JSON object"
    assert rows[5].error.startswith("id must be a string or a number")


def test_a_csv_row_with_more_cells_than_columns_is_reported(tmp_path: Path) -> None:
    catalog = tmp_path / "c.csv"
    catalog.write_text("id,image,title\np1,a.jpg,Red, dress\np2,b.jpg,Hat\n")
    rows = list(read_catalog(catalog))
    assert "4 cells but 3 columns" in rows[0].error and rows[1].error is None


def test_missing_or_repeated_columns_and_unknown_format_are_refused(tmp_path: Path) -> None:
    no_image = tmp_path / "c.csv"
    no_image.write_text("id,title\n1,x\n")
    with pytest.raises(InvalidArgumentError, match="missing columns"):
        list(read_catalog(no_image))
    twice = tmp_path / "t.csv"
    twice.write_text("id,image,price,price\n1,a,2,3\n")
    with pytest.raises(InvalidArgumentError, match="appear twice"):
        list(read_catalog(twice))
    parquet = tmp_path / "c.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(InvalidArgumentError, match=r"\.csv or \.jsonl"):
        list(read_catalog(parquet))
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        list(read_catalog(tmp_path / "nope.csv"))
