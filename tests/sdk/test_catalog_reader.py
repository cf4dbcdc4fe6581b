import json
from pathlib import Path

import pytest

from clipsearch.catalog import read_catalog
from clipsearch.errors import InvalidArgumentError

pytestmark = pytest.mark.unit


def test_csv_rows_become_typed_metadata_with_absolute_image(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,image,title,price,in_stock,sku\np1,img/a.jpg,Red dress,19.5,true,007\n")
    [row] = list(read_catalog(catalog))
    assert row.id == "p1" and row.error is None
    assert row.image_path == tmp_path / "img" / "a.jpg"
    assert row.metadata == {
        "title": "Red dress",
        "price": 19.5,
        "in_stock": True,
        "sku": 7,
        "image": str(tmp_path / "img" / "a.jpg"),
    }


def test_jsonl_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.jsonl"
    lines = [
        json.dumps({"id": "a", "image": "/abs/a.png", "title": "A", "tags": ["x"]}),
        "{not json",
        json.dumps({"id": "", "image": "b.png"}),
        json.dumps({"id": "c"}),
        "",
        json.dumps([1, 2]),
    ]
    catalog.write_text("\n".join(lines) + "\n")
    rows = list(read_catalog(catalog))
    assert [r.row for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].error is None and rows[0].metadata == {"title": "A", "image": "/abs/a.png"}
    assert rows[1].error.startswith("invalid JSON")
    assert rows[2].error == "empty id"
    assert rows[3].error == "empty image"
    assert rows[4].error == "expected a JSON object"


def test_missing_columns_and_unknown_format_are_refused(tmp_path: Path) -> None:
    no_image = tmp_path / "c.csv"
    no_image.write_text("id,title\n1,x\n")
    with pytest.raises(InvalidArgumentError, match="missing columns"):
        list(read_catalog(no_image))
    parquet = tmp_path / "c.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(InvalidArgumentError, match=r"\.csv or \.jsonl"):
        list(read_catalog(parquet))
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        list(read_catalog(tmp_path / "nope.csv"))
