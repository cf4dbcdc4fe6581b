"""A catalog's life through the SDK: products with several images, price changes that re-encode
nothing, a weekly sync that deletes what left the catalog, text vectors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch import FailedPreconditionError, SearchClient

pytestmark = pytest.mark.functional


def _rows(catalog: Path) -> list[dict]:
    with catalog.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    names = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def shop(tmp_path, small_catalog) -> tuple[Path, list[dict]]:
    """A copy of the small catalog's folder (its images) and its rows."""
    shutil.copytree(small_catalog.parent, tmp_path / "shop")
    return tmp_path / "shop", _rows(small_catalog)


@pytest.fixture
def client(pair, request):
    name = "lc_" + request.node.name[5:40]
    with SearchClient(pair.encoder, pair.index) as client:
        client.create_collection(name, exist_ok=True)
        client.collection = name  # type: ignore[attr-defined]
        yield client
        client.index.drop_collection(name, missing_ok=True)


def _counting_encoder(client, monkeypatch) -> list[int]:
    """Counts the inputs the ingest sends to the encoder."""
    sent: list[int] = []
    original = client.encoder.embed_stream

    def counting(chunks, **kwargs):
        def counted():
            for chunk in chunks:
                sent.append(len(chunk))
                yield chunk

        return original(counted(), **kwargs)

    monkeypatch.setattr(client.encoder, "embed_stream", counting)
    return sent


def test_products_with_several_images_three_ways(client, shop) -> None:
    folder, rows = shop
    images = [r["image"] for r in rows]
    # An images column (JSONL list), one (CSV "|" cell), and Shopify-style repeated rows.
    (folder / "a.jsonl").write_text(
        json.dumps({"id": "jl-1", "images": images[0:3], "title": "three looks", "price": 10}) + "\n"
    )
    _write_csv(
        folder / "b.csv", [{"id": "csv-1", "images": "|".join(images[3:5]), "title": "two", "price": "11"}]
    )
    _write_csv(
        folder / "c.csv",
        [
            {"id": "shop-1", "image": images[5], "title": "shopify", "price": "12"},
            {"id": "shop-1", "image": images[6], "title": "", "price": ""},  # extra image, cells empty
            {"id": "shop-1", "image": images[7], "title": "shopify", "price": ""},  # repeating a cell is fine
            {"id": "shop-1", "image": images[8], "title": "other", "price": ""},  # a conflict: reported
            {"id": "shop-1", "image": images[5], "title": "", "price": ""},  # the same image again
            {"id": "shop-2", "image": images[9], "title": "single", "price": "13"},
        ],
    )
    name = client.collection
    assert client.ingest(folder / "a.jsonl", collection=name).ingested == 3
    assert client.ingest(folder / "b.csv", collection=name).ingested == 2
    report = client.ingest(folder / "c.csv", collection=name)
    assert report.ingested == 4
    assert {(f.row, f.kind) for f in report.failed} == {(4, "duplicate id"), (5, "duplicate id")}
    assert "title" in report.failed[0].reason and "row 1" in report.failed[0].reason
    items = {item.id: item for item in client.index.iter_items(name)}
    assert sorted(items) == sorted(
        ["jl-1", "jl-1#2", "jl-1#3", "csv-1", "csv-1#2", "shop-1", "shop-1#2", "shop-1#3", "shop-2"]
    )
    assert items["shop-1#3"].group == "shop-1" and items["shop-1#3"].metadata["image"] == images[7]
    assert items["shop-1#2"].metadata["title"] == "shopify", "an extra row's empty cells are the product's"
    # Search returns products: each once, as its best image, however many images match.
    photo = folder / images[6]
    hits = client.search_image(photo, collection=name, k=4, group_size=3)
    assert hits[0].product == "shop-1" and hits[0].id == "shop-1#2"
    assert len({h.product for h in hits}) == 4
    assert hits[0].group_hits[0].id == "shop-1#2" and len(hits[0].group_hits) == 3
    # Per product and per image: delete one image, then the whole product.
    assert client.index.delete(name, ["jl-1#2"]) == 1
    assert client.index.delete(name, groups=["jl-1"]) == 2
    assert client.index.count(name) == 6


def test_one_broken_image_fails_alone(client, shop) -> None:
    folder, rows = shop
    catalog = folder / "broken.jsonl"
    catalog.write_text(
        json.dumps({"id": "p", "images": [rows[0]["image"], "missing.jpg", rows[1]["image"]]}) + "\n"
    )
    report = client.ingest(catalog, collection=client.collection)
    assert report.ingested == 2
    assert [(f.id, f.kind) for f in report.failed] == [("p#2", "image not found")]


def test_a_price_change_re_encodes_nothing(client, shop, monkeypatch) -> None:
    folder, rows = shop
    catalog = _write_csv(folder / "daily.csv", rows)
    name = client.collection
    assert client.ingest(catalog, collection=name).ingested == 40
    before = {i.id: i for i in client.index.iter_items(name, include_vectors=True)}
    for row in rows[:5]:
        row["price"] = f"{float(row['price']) + 1:.2f}"
    _write_csv(catalog, rows)
    sent = _counting_encoder(client, monkeypatch)
    report = client.ingest(catalog, collection=name)
    assert (report.ingested, report.updated, report.skipped) == (0, 5, 35)
    assert sum(sent) == 0, "no image went to the encoder"
    after = {i.id: i for i in client.index.iter_items(name, include_vectors=True)}
    for row in rows[:5]:
        assert after[row["id"]].metadata["price"] == float(row["price"])
        np.testing.assert_array_equal(after[row["id"]].vector, before[row["id"]].vector)
    assert client.search_text("a dress", collection=name, k=3, filter={"price": {"gte": 0}})
    # A changed image is re-encoded; a column removed from the catalog is removed from the items.
    shutil.copy(folder / rows[8]["image"], folder / rows[7]["image"])
    for row in rows:
        del row["color"]
    _write_csv(catalog, rows)
    report = client.ingest(catalog, collection=name)
    assert (report.ingested, report.updated) == (1, 39)
    assert "color" not in client.index.get(name, [rows[0]["id"]])[0].metadata


def test_weekly_sync_deletes_what_left_the_catalog(client, shop) -> None:
    folder, rows = shop
    catalog = _write_csv(folder / "weekly.csv", rows)
    name = client.collection
    client.ingest(catalog, collection=name)
    client.index.upsert(name, ["from-elsewhere"], np.ones((1, client.model.embedding_dim), np.float32))
    _write_csv(catalog, rows[:30])
    preview = client.ingest(catalog, collection=name, sync=True, dry_run=True)
    assert (preview.dry_run, preview.deleted, preview.skipped, preview.ingested) == (True, 11, 30, 0)
    assert client.index.count(name) == 41, "a dry run writes nothing"
    done = client.ingest(catalog, collection=name, sync=True)
    assert (done.deleted, client.index.count(name)) == (11, 30)
    # A catalog whose rows all fail deletes nothing.
    catalog.write_text("id,image\nx,missing.jpg\n")
    with pytest.raises(FailedPreconditionError, match="nothing is deleted"):
        client.ingest(catalog, collection=name, sync=True)
    assert client.index.count(name) == 30


def test_a_failed_image_is_not_deleted_by_a_sync(client, shop) -> None:
    folder, rows = shop
    catalog = _write_csv(folder / "sync.csv", rows[:10])
    client.ingest(catalog, collection=client.collection)
    (folder / rows[3]["image"]).unlink()  # the photo is gone for now; the product stays listed
    report = client.ingest(catalog, collection=client.collection, sync=True)
    assert report.deleted == 0 and [f.id for f in report.failed] == [rows[3]["id"]]
    assert client.index.count(client.collection) == 10


def test_text_vectors_make_titles_searchable(client, shop) -> None:
    folder, rows = shop
    catalog = _write_csv(folder / "text.csv", rows[:12])
    name = client.collection
    report = client.ingest(catalog, collection=name, text_vector="title,category")
    assert report.ingested == 24
    item = client.index.get(name, [f"{rows[2]['id']}#text"])[0]
    assert item.group == rows[2]["id"]
    hits = client.search_text(rows[2]["title"], collection=name, k=12)
    assert len({h.product for h in hits}) == 12, "a product once, whether its image or its text matched"
    with pytest.raises(Exception, match="text_vector"):
        client.ingest(catalog, collection=name, text_vector="no_such_column")
