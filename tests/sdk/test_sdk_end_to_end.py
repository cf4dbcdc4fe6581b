"""The Python SDK against the real pair: every composed call, errors, resumable ingest."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch import InvalidArgumentError, NotFoundError, SearchClient
from clipsearch.query import Query

pytestmark = pytest.mark.functional


def _rows(catalog: Path) -> list[dict]:
    with catalog.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def client(pair, small_catalog):
    with SearchClient(pair.encoder, pair.index) as client:
        client.create_collection("sdk_e2e", num_shards=2)
        report = client.ingest(small_catalog, collection="sdk_e2e", batch_size=8)
        assert report.ingested == 40 and not report.failed
        yield client


def test_collection_is_tagged_with_the_encoder_model(client) -> None:
    info = client.index.describe_collection("sdk_e2e")
    assert info.dimension == client.model.embedding_dim
    assert info.model_fingerprint == client.model.fingerprint and info.model_fingerprint
    assert info.num_shards == 2 and info.item_count == 40


def test_image_search_finds_the_same_image_first(client, small_catalog) -> None:
    for row in _rows(small_catalog)[:5]:
        image = small_catalog.parent / row["image"]
        hits = client.search_image(image, collection="sdk_e2e", k=3)
        assert hits[0].id == row["id"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert hits[0].metadata["title"] == row["title"]
        assert hits[0].metadata["image"] == row["image"]  # as the catalog wrote it


def test_text_search_returns_k_sorted_hits_with_metadata(client) -> None:
    hits = client.search_text("a red dress", collection="sdk_e2e", k=7)
    assert len(hits) == 7
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all({"title", "category", "price", "image"} <= set(h.metadata) for h in hits)
    assert not any(key.startswith("content") for h in hits for key in h.metadata)


def test_filters_pass_through(client, small_catalog) -> None:
    rows = _rows(small_catalog)
    category = rows[0]["category"]
    expected = {r["id"] for r in rows if r["category"] == category}
    hits = client.search_text("anything", collection="sdk_e2e", k=40, filter={"category": category})
    assert {h.id for h in hits} == expected
    cheap = client.search_text("anything", collection="sdk_e2e", k=40, filter={"price": {"lt": 30}})
    assert {h.id for h in cheap} == {r["id"] for r in rows if float(r["price"]) < 30}


def test_pagination_with_offset(client) -> None:
    first = client.search_text("a hat", collection="sdk_e2e", k=10)
    second = client.search_text("a hat", collection="sdk_e2e", k=5, offset=5)
    assert [h.id for h in second] == [h.id for h in first[5:10]]


def test_more_like_this_excludes_the_item_and_pages_align(client, small_catalog) -> None:
    item_id = _rows(small_catalog)[3]["id"]
    page1 = client.more_like_this(item_id, collection="sdk_e2e", k=4)
    page2 = client.more_like_this(item_id, collection="sdk_e2e", k=4, offset=4)
    whole = client.more_like_this(item_id, collection="sdk_e2e", k=8)
    assert item_id not in {h.id for h in whole}
    assert [h.id for h in page1 + page2] == [h.id for h in whole]
    with pytest.raises(NotFoundError):
        client.more_like_this("no-such-id", collection="sdk_e2e")


def test_hybrid_query_is_the_normalized_weighted_sum(client, small_catalog) -> None:
    image = small_catalog.parent / _rows(small_catalog)[0]["image"]
    image_vec = client.encoder.embed_images([image])[0]
    red, striped = client.encoder.embed_texts(["red", "striped"])
    expected = image_vec + 0.5 * red - 0.5 * striped
    expected /= np.linalg.norm(expected)
    query = Query.image(image) + Query.text("red", 0.5) - Query.text("striped", 0.5)
    np.testing.assert_allclose(client.embed_query(query), expected, atol=1e-5)
    hits = client.search(query, collection="sdk_e2e", k=5)
    assert len(hits) == 5
    with pytest.raises(InvalidArgumentError):
        client.search(Query.text("x") - Query.text("x"), collection="sdk_e2e")


def test_errors_are_typed(client) -> None:
    with pytest.raises(NotFoundError):
        client.search_text("a dress", collection="no_such_collection")
    with pytest.raises(InvalidArgumentError) as bad_filter:
        client.search_text("a dress", collection="sdk_e2e", filter={"price": {"between": 3}})
    assert bad_filter.value.field == "filter.price"
    with pytest.raises(InvalidArgumentError) as bad_image:
        client.search_image(b"not an image", collection="sdk_e2e")
    assert bad_image.value.field.startswith("inputs[0]")


def test_reingest_skips_unchanged_and_reports_bad_rows(client, small_catalog, tmp_path) -> None:
    again = client.ingest(small_catalog, collection="sdk_e2e")
    assert (again.ingested, again.skipped, again.failed) == (0, 40, [])

    # A copy with one changed image, one missing file, one corrupt file and a repeated id.
    shutil.copytree(small_catalog.parent, tmp_path / "cat", dirs_exist_ok=True)
    catalog = tmp_path / "cat" / small_catalog.name
    rows = _rows(catalog)
    (catalog.parent / rows[1]["image"]).write_bytes((catalog.parent / rows[2]["image"]).read_bytes())
    (catalog.parent / rows[4]["image"]).unlink()
    (catalog.parent / rows[5]["image"]).write_bytes(b"\xff\xd8\xff garbage")
    rows.append(dict(rows[0]))
    with catalog.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = client.ingest(catalog, collection="sdk_e2e", batch_size=4)
    reasons = {f.id: f.reason for f in report.failed}
    # The copy's paths are relative, so only the row whose image bytes changed is embedded again;
    # the missing, corrupt and repeated rows fail (40 distinct ids: 1 changed, 2 failed, 37 kept).
    assert report.ingested == 1 and report.skipped == 37
    assert set(reasons) == {rows[4]["id"], rows[5]["id"], rows[0]["id"]}
    assert "cannot read image" in reasons[rows[4]["id"]]
    assert "duplicate id" in reasons[rows[0]["id"]]
    # Put the original catalog back for the other tests of this module.
    assert client.ingest(small_catalog, collection="sdk_e2e").ingested == 1


def test_delete_removes_items_from_search_and_get(client, small_catalog) -> None:
    row = _rows(small_catalog)[10]
    image = small_catalog.parent / row["image"]
    assert client.delete(collection="sdk_e2e", ids=[row["id"]]) == 1
    assert client.delete(collection="sdk_e2e", ids=[row["id"]]) == 0
    assert row["id"] not in {h.id for h in client.search_image(image, collection="sdk_e2e", k=40)}
    assert client.index.get("sdk_e2e", [row["id"]], missing_ok=True) == []
    with pytest.raises(NotFoundError, match=row["id"]):
        client.index.get("sdk_e2e", [row["id"]])
    restored = client.ingest(small_catalog, collection="sdk_e2e")
    assert (restored.ingested, restored.skipped) == (1, 39)


def test_embed_stream_reports_bad_inputs_in_place(client, small_catalog) -> None:
    from clipsearch.v1 import encoder_pb2

    image = (small_catalog.parent / _rows(small_catalog)[0]["image"]).read_bytes()
    chunks = [
        [encoder_pb2.EmbedInput(image=image), encoder_pb2.EmbedInput(image=b"GIF89a not really")],
        [encoder_pb2.EmbedInput(text="a hat")],
    ]
    first, second = list(client.encoder.embed_stream(chunks))
    np.testing.assert_allclose(first[0], client.encoder.embed_images([image])[0], atol=1e-5)
    assert isinstance(first[1], InvalidArgumentError) and first[1].field == "inputs[1]"
    assert second[0].shape == (client.model.embedding_dim,)
