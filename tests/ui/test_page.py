"""The page's server without a browser: parameters, errors, and which files it agrees to serve."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from ui_harness import COLLECTION, PageServer

from clipsearch import SearchClient
from clipsearch.apps.ui.page import PageError, SearchPage, hit_to_json, sniff_image_type
from clipsearch.apps.ui.params import ParamError, SearchParams, filter_fields
from clipsearch.apps.ui.settings import UISettings
from clipsearch.schema import Schema
from clipsearch.types import Hit

pytestmark = pytest.mark.functional

# -- parameters (no services) -------------------------------------------------------------------


SHOP = Schema.from_dict(
    {
        "brand": {"type": "keyword", "case_insensitive": True},
        "category": "keyword",
        "description": "text",
        "image": "keyword",
        "in_stock": "boolean",
        "k": "keyword",
        "price": {"type": "float", "currency": "USD"},
        "rating": "integer",
        "tags": "keywords",
    }
)


def test_params_become_an_sdk_filter_from_the_schema() -> None:
    query = {
        "k": "20",
        "page": "3",
        "category": " dress ",
        "brand": ["Kestrel", "Velora", "Kestrel"],
        "tags": ["sale"],
        "in_stock": "TRUE",
        "min_price": "10",
        "max_price": "49.5",
        "max_rating": "4",
        "description": "silk",  # text fields are searched, not filtered
        "image": "/etc/passwd",  # hidden fields are never filters
        "unknown": "x",  # a field that is gone: ignored
    }
    params = SearchParams.parse(query, max_k=100, schema=SHOP)
    assert (params.k, params.page, params.offset, params.mode) == (20, 3, 40, "auto")
    assert params.filter() == {
        "brand": {"in": ["Kestrel", "Velora"]},
        "category": "dress",
        "tags": {"in": ["sale"]},
        "in_stock": True,
        "price": {"gte": 10.0, "lte": 49.5},
        "rating": {"lte": 4.0},
    }
    assert SearchParams.parse({"max_price": "30"}, max_k=100).filter() == {"price": {"lte": 30.0}}
    assert SearchParams.parse({"k": "", "category": "  "}, max_k=100) == SearchParams()
    assert SearchParams().filter() is None


def test_filters_offered_follow_the_schema() -> None:
    fields = [f.to_json() for f in filter_fields(SHOP)]
    assert [(f["name"], f["kind"]) for f in fields] == [
        ("brand", "keyword"),
        ("category", "keyword"),
        ("tags", "keywords"),
        ("in_stock", "boolean"),
        ("price", "range"),  # money first among the ranges
        ("rating", "range"),
    ]
    assert fields[4]["currency"] == "USD" and fields[5]["integer"]
    # A collection made before schemas keeps the page's old filters.
    assert [f.name for f in filter_fields(None)] == ["category", "price"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"k": "0"}, "k must be between 1 and 100, got 0."),
        ({"k": "101"}, "k must be between 1 and 100, got 101."),
        ({"k": "ten"}, "k must be a number, got 'ten'."),
        ({"page": "0"}, "page must be between 1 and 100, got 0."),
        ({"mode": "semantic"}, "mode must be one of auto, hybrid, vector, keyword; got 'semantic'."),
        ({"min_price": "cheap"}, "min_price must be a number, got 'cheap'."),
        ({"max_price": "nan"}, "max_price must be a finite number, got 'nan'."),
        ({"min_price": "-1"}, "Min price must not be negative."),
        ({"min_price": "50", "max_price": "20"}, "Min price (50) is above max price (20)."),
        ({"in_stock": "maybe"}, "in_stock must be true or false, got 'maybe'."),
    ],
)
def test_bad_params_are_refused_with_a_sentence(query: dict, message: str) -> None:
    with pytest.raises(ParamError) as caught:
        SearchParams.parse(query, max_k=100, schema=SHOP)
    assert str(caught.value) == message


def test_hits_are_products_with_their_pictures_and_no_server_paths() -> None:
    hit = Hit(
        "p1", 0.5, {"title": "Red dress", "image": "/data/p1.jpg", "content_sha256": "ab", "price": 9.99}
    )
    assert hit_to_json(hit) == {
        "id": "p1",
        "product": "p1",
        "score": 0.5,
        "title": "Red dress",
        "image_url": "/api/image?id=p1",
        "has_image": True,
        "images": [{"id": "p1", "url": "/api/image?id=p1", "score": 0.5}],
        "metadata": {"price": 9.99},
        "matched": [],
    }
    assert hit_to_json(Hit("p2", 0.1, {}))["title"] == "p2"
    url = hit_to_json(Hit("p 3", 0.1, {"image": "https://cdn.example.com/a.jpg"}))
    assert url["image_url"] == "https://cdn.example.com/a.jpg"
    assert hit_to_json(Hit("p 4", 0.1, {"image": "images/a.jpg"}))["image_url"] == "/api/image?id=p%204"
    # A product found by its text vector shows its photos, best-matching first.
    items = (
        Hit("p5#text", 0.9, {"title": "Hat"}, group="p5"),
        Hit("p5#2", 0.7, {"title": "Hat", "image": "b.jpg"}, group="p5"),
        Hit("p5", 0.6, {"title": "Hat", "image": "a.jpg"}, group="p5"),
    )
    product = hit_to_json(Hit("p5#text", 0.9, {"title": "Hat"}, group="p5", group_hits=items))
    assert product["product"] == "p5" and product["image_url"] == "/api/image?id=p5%232"
    assert [image["id"] for image in product["images"]] == ["p5#2", "p5"]


def test_image_types_are_sniffed_from_bytes() -> None:
    assert sniff_image_type(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00") == "image/jpeg"
    assert sniff_image_type(b"\x89PNG\r\n\x1a\n\x00\x00\x00\r") == "image/png"
    assert sniff_image_type(b"RIFF\x10\x00\x00\x00WEBP") == "image/webp"
    assert sniff_image_type(b"GIF89a\x01\x00") == "image/gif"
    assert sniff_image_type(b"root:x:0:0:root") is None
    assert sniff_image_type(b"") is None


# -- against the services -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(services, tmp_path_factory):
    """A collection whose items point at files that are not product images."""
    secret = tmp_path_factory.mktemp("secret") / "token.png"
    secret.write_text("not an image: a secret the page must not serve\n")
    with SearchClient(services.encoder, services.index) as client:
        client.create_collection("hostile", exist_ok=True)
        paths = {
            "passwd": "/etc/passwd",
            "text": str(secret),
            "folder": str(secret.parent),
            "gone": str(secret.parent / "gone.jpg"),
            "relative": "../../../../etc/passwd",  # no --image-root: relative paths are not served
            "url": "https://cdn.example.com/p.jpg",  # shown by the browser itself, never fetched by the page
        }
        vectors = np.eye(len(paths), client.model.embedding_dim, dtype=np.float32)
        metadata = [{"image": path, "title": name} for name, path in paths.items()]
        client.index.upsert(
            "hostile", list(paths), vectors, metadata, model_fingerprint=client.model.fingerprint
        )
    page = SearchPage(UISettings(encoder=services.encoder, index=services.index, collection="hostile"))
    yield page, list(paths)
    page.close()


def test_only_images_of_stored_products_are_served(services, hostile) -> None:
    page, ids = hostile
    for item_id in [*ids, "../../etc/passwd", "/etc/passwd", "unknown"]:
        with pytest.raises(PageError) as caught:
            page.image_file(item_id)
        assert caught.value.status == 404, item_id
    root = str(services.catalog.parent)
    demo = SearchPage(
        UISettings(encoder=services.encoder, index=services.index, collection=COLLECTION, image_root=root)
    )
    try:
        path, media_type = demo.image_file("p00001")
        assert media_type == "image/jpeg" and path.read_bytes()[:3] == b"\xff\xd8\xff"
    finally:
        demo.close()


def test_status_and_errors_name_the_service_that_is_down(services) -> None:
    page = SearchPage(UISettings(encoder=services.encoder, index="127.0.0.1:1", collection=COLLECTION))
    try:
        status = page.status()
        assert status["encoder"]["ok"] and not status["index"]["ok"]
        assert status["index"]["message"].startswith("The index service at 127.0.0.1:1 is not reachable")
        with pytest.raises(PageError) as caught:
            page.search_text("a red dress", SearchParams())
        assert caught.value.status == 503
        assert caught.value.message.startswith("The index service at 127.0.0.1:1 is not reachable")
    finally:
        page.close()


def test_missing_collection_says_how_to_fill_it(services) -> None:
    page = SearchPage(UISettings(encoder=services.encoder, index=services.index, collection="empty"))
    try:
        assert "clipsearch ingest CATALOG --collection empty" in page.status()["index"]["message"]
        with pytest.raises(PageError) as caught:
            page.more_like_this("p00001", SearchParams())
        assert caught.value.status == 404 and "no collection 'empty'" in caught.value.message
    finally:
        page.close()


def get(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_http_answers(services, page_url) -> None:
    status, headers, body = get(page_url + "/")
    assert status == 200 and b'id="results"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"

    status, headers, body = get(page_url + "/api/image?id=p00003")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    for query in ("id=..%2F..%2Fetc%2Fpasswd", "id=", ""):
        status, _, body = get(page_url + "/api/image?" + query)
        assert status == 404 and "error" in json.loads(body), query

    status, _, body = get(page_url + "/api/search/text?q=hat&k=3")
    assert status == 200 and len(json.loads(body)["hits"]) == 3
    status, _, body = get(page_url + "/api/search/text?q=hat&k=1000")
    assert status == 400 and json.loads(body) == {"error": "k must be between 1 and 100, got 1000."}
    status, _, body = get(page_url + "/static/../conftest.py")
    assert status == 404
    status, _, body = get(page_url + "/no/such/page")
    assert status == 404 and json.loads(body) == {"error": "No such page: /no/such/page"}


def test_upload_limit(services) -> None:
    settings = UISettings(
        port=0, encoder=services.encoder, index=services.index, collection=COLLECTION, max_upload_bytes=1000
    )
    image = Path(next(services.catalog.parent.glob("images/*")))
    assert image.stat().st_size > 1000
    with PageServer(settings) as server:
        status, _, body = get(server.url + "/api/search/image", data=image.read_bytes())
        assert status == 413 and "too large" in json.loads(body)["error"]
        status, _, body = get(server.url + "/api/search/image", data=b"")
        assert status == 400 and json.loads(body) == {"error": "Choose an image file to search with."}


class BrokenPage(SearchPage):
    def status(self):
        raise RuntimeError("boom in /srv/secret/config.py")


def test_unexpected_errors_answer_without_details(services) -> None:
    settings = UISettings(port=0, encoder=services.encoder, index=services.index, collection=COLLECTION)
    page = BrokenPage(settings)
    try:
        with PageServer(settings, page) as server:
            status, _, body = get(server.url + "/api/status")
    finally:
        page.close()
    assert status == 500
    assert json.loads(body) == {
        "error": "Something went wrong on the search page's server; the details are in its log."
    }
