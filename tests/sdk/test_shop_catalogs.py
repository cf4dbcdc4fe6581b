"""Catalogs written the way shops write them, through the SDK and the real services.

Each test asserts what is stored, what a search returns and what the user is told.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from harness import ServerThread
from image_server import image_server
from PIL import Image

from clipsearch import SearchClient
from clipsearch.errors import FailedPreconditionError, InvalidArgumentError
from clipsearch.schema import FieldType

pytestmark = pytest.mark.functional


def _picture(color: tuple[int, int, int], size: int = 40) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    image.paste(color, (8, 8, size - 8, size - 8))
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _catalog(
    folder: Path, header: list[str], rows: list[list[str]], images: dict[str, bytes] | None = None
) -> Path:
    """A CSV catalog; ``images`` are written under ``folder`` by their relative names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (images or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    path = folder / "catalog.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def client(pair):
    with SearchClient(pair.encoder, pair.index) as client:
        yield client


def _fresh(client: SearchClient, name: str) -> str:
    client.index.drop_collection(name, missing_ok=True)
    client.create_collection(name)
    return name


def test_ids_are_kept_byte_for_byte(client, tmp_path) -> None:
    ids = ["0042", "42", "1.50", "1.5", "TRUE", "True", "1e3", "sku-a", "SKU-A", "a b", "ü/é"]
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    images = {f"img/{i}.png": _png(_picture(colors[i % 3], 40 + i)) for i in range(len(ids))}
    catalog = _catalog(
        tmp_path, ["id", "image"], [[item, f"img/{i}.png"] for i, item in enumerate(ids)], images
    )
    name = _fresh(client, "ids")
    report = client.ingest(catalog, collection=name)
    assert report.ingested == len(ids) and not report.failed
    stored = client.index.get(name, ids)
    assert [item.id for item in stored] == ids
    assert client.index.delete(name, ["0042"]) == 1
    assert {item.id for item in client.index.get(name, ids, missing_ok=True)} == set(ids) - {"0042"}


def test_prices_with_currency_booleans_and_tags_are_typed(client, tmp_path) -> None:
    header = ["id", "image", "title", "price", "in_stock", "tags", "category"]
    rows = [
        ["p1", "a.png", "Red summer hat", "$16.99", "yes", "red|Summer", "Hat"],
        ["p2", "b.png", "Blue winter coat", "$1,299.00", "no", "blue|winter", "coat"],
        ["p3", "c.png", "Green scarf for autumn", "$9", "Yes", "green", "scarf"],
    ]
    images = {
        f"{c}.png": _png(_picture(color))
        for c, color in zip("abc", [(200, 0, 0), (0, 0, 200), (0, 200, 0)], strict=True)
    }
    catalog = _catalog(tmp_path, header, rows, images)
    name = _fresh(client, "typed")
    report = client.ingest(catalog, collection=name)
    assert report.ingested == 3 and not report.failed
    schema = client.index.describe_collection(name).schema
    assert schema is not None
    assert schema.get("price").type == FieldType.FLOAT and schema.get("price").currency == "USD"
    assert schema.get("in_stock").type == FieldType.BOOLEAN
    assert schema.get("tags").type == FieldType.KEYWORDS
    assert schema.get("title").type == FieldType.TEXT
    [item] = client.index.get(name, ["p2"])
    assert item.metadata["price"] == 1299.0 and item.metadata["in_stock"] is False
    assert item.metadata["tags"] == ["blue", "winter"]

    def found(filter_) -> set[str]:
        return {h.id for h in client.search_text("anything", collection=name, k=10, filter=filter_)}

    assert found({"price": {"lt": 1000}}) == {"p1", "p3"}
    assert found({"in_stock": True}) == {"p1", "p3"}
    assert found({"tags": "SUMMER"}) == {"p1"}
    assert found({"category": "HAT"}) == {"p1"}


def test_a_misspelled_or_mistyped_filter_is_an_error_that_lists_the_fields(client, tmp_path) -> None:
    catalog = _catalog(
        tmp_path,
        ["id", "image", "color", "price"],
        [["p1", "a.png", "red", "3"]],
        {"a.png": _png(_picture((9, 9, 9)))},
    )
    name = _fresh(client, "misspelled")
    client.ingest(catalog, collection=name)
    with pytest.raises(InvalidArgumentError) as caught:
        client.search_text("red", collection=name, filter={"colour": "red"})
    assert "unknown field 'colour'" in caught.value.message and "color" in caught.value.message
    with pytest.raises(InvalidArgumentError, match="a range compares numbers"):
        client.search_text("red", collection=name, filter={"color": {"lt": 3}})


def test_values_that_do_not_fit_their_field_fail_only_their_row(client, tmp_path) -> None:
    name = _fresh(client, "misfits")
    first = _catalog(
        tmp_path / "one",
        ["id", "image", "price"],
        [["p1", "a.png", "$3"]],
        {"a.png": _png(_picture((1, 2, 3)))},
    )
    client.ingest(first, collection=name)
    rows = [["p2", "a.png", "$4"], ["p3", "a.png", "free"], ["p4", "a.png", "1,299"], ["p5", "a.png", "€5"]]
    second = _catalog(tmp_path / "two", ["id", "image", "price"], rows, {"a.png": _png(_picture((1, 2, 3)))})
    report = client.ingest(second, collection=name)
    assert report.ingested == 1
    reasons = {f.id: (f.kind, f.reason) for f in report.failed}
    assert reasons["p3"] == ("bad value", "price: 'free' is not a number")
    assert "ambiguous" in reasons["p4"][1] and "EUR" in reasons["p5"][1]
    assert [f.record["price"] for f in report.failed] == ["free", "1,299", "€5"]  # the rows as read


def test_relative_image_paths_survive_moving_the_catalog(client, tmp_path) -> None:
    images = {f"images/{i}.png": _png(_picture((40 * i, 90, 200 - 40 * i))) for i in range(4)}
    catalog = _catalog(
        tmp_path / "shop", ["id", "image"], [[f"p{i}", f"images/{i}.png"] for i in range(4)], images
    )
    name = _fresh(client, "moved")
    assert client.ingest(catalog, collection=name).ingested == 4
    moved = tmp_path / "elsewhere" / "shop"
    shutil.move(str(catalog.parent), str(moved))
    again = client.ingest(moved / "catalog.csv", collection=name)
    assert (again.ingested, again.skipped, again.failed) == (0, 4, [])  # nothing re-embedded
    assert client.index.get(name, ["p1"])[0].metadata["image"] == "images/1.png"


def test_image_urls_are_fetched_within_limits_and_fail_row_by_row(client, tmp_path) -> None:
    good = _png(_picture((220, 20, 20)))
    with image_server({"a.png": good, "b.png": good}) as server:
        base = server.base
        rows = [
            ["ok", f"{base}/good/a.png"],
            ["octet", f"{base}/octet/b.png"],
            ["moved", f"{base}/moved/a.png"],
            ["flaky", f"{base}/flaky/a.png"],
            ["slow", f"{base}/slow/a.png"],
            ["huge", f"{base}/huge/a.png"],
            ["html", f"{base}/html/a.png"],
            ["broken", f"{base}/broken/a.png"],
            ["loop", f"{base}/loop/a.png"],
            ["gone", f"{base}/missing/a.png"],
        ]
        catalog = _catalog(tmp_path, ["id", "image"], rows)
        name = _fresh(client, "urls")
        report = client.ingest(
            catalog, collection=name, fetch_timeout_s=1.0, fetch_retries=1, max_image_bytes=1 << 20
        )
    assert report.ingested == 4
    kinds = {f.id: f.kind for f in report.failed}
    assert kinds == {
        "slow": "fetch failed",
        "huge": "image too large",
        "html": "not an image",
        "broken": "not an image",
        "loop": "fetch failed",
        "gone": "fetch failed",
    }
    assert (
        any(r.startswith("/flaky/") for r in server.requests[1:])
        and server.requests.count("/flaky/a.png") == 2
    )
    [stored] = client.index.get(name, ["ok"])
    assert stored.metadata["image"] == f"{base}/good/a.png"


def test_transparent_cutouts_embed_like_the_picture_a_person_sees(client, tmp_path) -> None:
    picture = _picture((200, 40, 40), 64)
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (8, 8, 56, 56))
    images = {}
    for under in ((0, 0, 0), (255, 255, 255)):
        cutout = Image.new("RGBA", picture.size, (*under, 0))
        cutout.paste(picture, mask=mask)
        images[f"cut-{under[0]}.png"] = _png(cutout)
    flat = Image.new("RGB", picture.size, (255, 255, 255))
    flat.paste(picture, mask=mask)
    images["flat.png"] = _png(flat)
    catalog = _catalog(tmp_path, ["id", "image"], [[n.removesuffix(".png"), n] for n in images], images)
    name = _fresh(client, "cutouts")
    assert client.ingest(catalog, collection=name).ingested == 3
    vectors = {
        item.id: item.vector
        for item in client.index.get(name, ["cut-0", "cut-255", "flat"], include_vectors=True)
    }
    for cut in ("cut-0", "cut-255"):
        assert float(np.dot(vectors[cut], vectors["flat"])) > 0.999


def test_16_bit_and_cmyk_files_are_read_by_value(client, tmp_path) -> None:
    ramp = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))
    grey8 = Image.fromarray(ramp, "L")
    grey16 = Image.fromarray(ramp.astype(np.uint16) * 257)  # mode I;16
    rgb = _picture((30, 120, 200), 48)
    jpeg_rgb, jpeg_cmyk = io.BytesIO(), io.BytesIO()
    rgb.save(jpeg_rgb, format="JPEG", quality=95)
    rgb.convert("CMYK").save(jpeg_cmyk, format="JPEG", quality=95)
    images = {
        "g8.png": _png(grey8),
        "g16.png": _png(grey16),
        "rgb.jpg": jpeg_rgb.getvalue(),
        "cmyk.jpg": jpeg_cmyk.getvalue(),
    }
    catalog = _catalog(tmp_path, ["id", "image"], [[n.split(".")[0], n] for n in images], images)
    name = _fresh(client, "depths")
    assert client.ingest(catalog, collection=name).ingested == 4
    vectors = {
        i.id: i.vector for i in client.index.get(name, ["g8", "g16", "rgb", "cmyk"], include_vectors=True)
    }
    assert float(np.dot(vectors["g8"], vectors["g16"])) > 0.999
    assert float(np.dot(vectors["rgb"], vectors["cmyk"])) > 0.99


def test_a_model_swap_is_refused_naming_both_models_and_a_new_collection_works(
    client, pair, tmp_path
) -> None:
    from encoder_service.server import create_server
    from encoder_service.settings import EncoderSettings

    images = {f"{i}.png": _png(_picture((60 * i, 30, 90))) for i in range(3)}
    catalog = _catalog(tmp_path, ["id", "image"], [[f"p{i}", f"{i}.png"] for i in range(3)], images)
    name = _fresh(client, "model_a")
    assert client.ingest(catalog, collection=name).ingested == 3
    demo = EncoderSettings(port=0, model="clipsearch-demo")
    with (
        ServerThread(lambda: create_server(demo), name="other-encoder") as other,
        SearchClient(other.address, pair.index) as swapped,
    ):
        with pytest.raises(FailedPreconditionError) as ingest_error:
            swapped.ingest(catalog, collection=name)
        message = ingest_error.value.message
        assert "clipsearch-tiny (random)" in message and "clipsearch-demo (clipsearch-demo.pt)" in message
        assert "new collection" in message
        with pytest.raises(FailedPreconditionError) as search_error:
            swapped.search_text("a red dress", collection=name)
        assert "clipsearch-tiny (random)" in search_error.value.message
        assert "clipsearch-demo (clipsearch-demo.pt)" in search_error.value.message
        fresh = _fresh(swapped, "model_b")
        assert swapped.ingest(catalog, collection=fresh).ingested == 3
        assert swapped.ingest(catalog, collection=fresh).skipped == 3
