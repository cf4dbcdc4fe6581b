"""The procedurally rendered demo catalog: determinism, uniqueness, CSV shape, coverage, caching."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from clipsearch.apps.demo import catalog as demo
from clipsearch.apps.demo.catalog import (
    CATEGORIES,
    COLORS,
    PATTERNS,
    captions,
    ensure_demo_catalog,
    generate_catalog,
    make_products,
    query_for,
    render_product,
)
from clipsearch.catalog import read_catalog

pytestmark = pytest.mark.unit


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_catalog_byte_for_byte(tmp_path: Path) -> None:
    generate_catalog(tmp_path / "a", n_products=20, seed=5, image_size=48)
    generate_catalog(tmp_path / "b", n_products=20, seed=5, image_size=48)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_other_seed_other_catalog(tmp_path: Path) -> None:
    a = _files(generate_catalog(tmp_path / "a", n_products=20, seed=5, image_size=48).parent)
    b = _files(generate_catalog(tmp_path / "b", n_products=20, seed=6, image_size=48).parent)
    assert a["catalog.csv"] != b["catalog.csv"]
    assert all(a[name] != b[name] for name in a if name.startswith("images/"))


def test_product_depends_only_on_seed_and_position() -> None:
    assert make_products(15, seed=3) == make_products(40, seed=3)[:15]


def test_no_two_images_identical() -> None:
    # Same attributes must still differ: render every product of a full categoryxcolor cycle twice over.
    products = make_products(2 * len(CATEGORIES) * len(COLORS), seed=11)
    digests = {hashlib.sha256(np.asarray(render_product(p, 64)).tobytes()).hexdigest() for p in products}
    assert len(digests) == len(products)


def test_csv_columns_and_rows(tmp_path: Path) -> None:
    csv_path = generate_catalog(tmp_path, n_products=12, seed=1, image_size=32, image_format="png")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == (
            "id",
            "image",
            "title",
            "category",
            "color",
            "pattern",
            "price",
            "brand",
            "sku",
            "description",
        )
        rows = list(reader)
    assert len(rows) == 12
    assert len({r["id"] for r in rows}) == 12
    for row in rows:
        assert not Path(row["image"]).is_absolute()
        image = csv_path.parent / row["image"]
        assert image.suffix == ".png" and image.read_bytes()[:4] == b"\x89PNG"
        assert row["category"] in CATEGORIES and row["color"] in COLORS and row["pattern"] in PATTERNS
        assert row["title"].lower().startswith(row["color"])
        assert float(row["price"]) > 0


def test_jpeg_images_have_the_requested_size(tmp_path: Path) -> None:
    from PIL import Image

    csv_path = generate_catalog(tmp_path, n_products=3, seed=2, image_size=96)
    for image in sorted((csv_path.parent / "images").iterdir()):
        with Image.open(image) as opened:
            assert (opened.format, opened.size) == ("JPEG", (96, 96))


def test_the_sdk_reads_a_generated_catalog(tmp_path: Path) -> None:
    csv_path = generate_catalog(tmp_path, n_products=5, seed=4, image_size=32)
    rows = list(read_catalog(csv_path))
    products = make_products(5, seed=4)
    assert [r.id for r in rows] == [p.id for p in products]
    for row, product in zip(rows, products, strict=True):
        assert row.error is None and (csv_path.parent / row.image).is_file()
        assert row.cells["category"] == product.category
        assert float(row.cells["price"]) == pytest.approx(product.price)


def test_attribute_coverage() -> None:
    assert len(CATEGORIES) >= 8 and len(COLORS) >= 10 and len(PATTERNS) >= 3
    pairs = len(CATEGORIES) * len(COLORS)
    # One cycle deals every categoryxcolor pair exactly once.
    first_cycle = make_products(pairs, seed=0)
    assert len({(p.category, p.color) for p in first_cycle}) == pairs
    products = make_products(300, seed=0)
    assert {p.pattern for p in products} == set(PATTERNS)
    assert {p.category for p in products} == set(CATEGORIES)
    assert {p.color for p in products} == set(COLORS)


def test_queries_read_naturally() -> None:
    assert query_for("dress", "red") == "a red dress"
    assert query_for("dress", "red", "striped") == "a red striped dress"
    assert query_for("hat", "orange") == "an orange hat"
    assert query_for("hat", "blue", "plain") == "a plain blue hat"
    assert query_for("trousers", "black", "dotted") == "black dotted trousers"


@pytest.mark.parametrize("category", CATEGORIES)
def test_captions_name_exactly_the_given_attributes(category: str) -> None:
    plural = {"dress": "dresses", "scarf": "scarves"}.get(category, category.rstrip("s") + "s")
    pattern_words = {
        "striped",
        "stripes",
        "dotted",
        "polka",
        "checked",
        "checkered",
        "checks",
        "plain",
        "solid",
        "pattern",
    }
    for color in COLORS:
        partial = captions(category, color)
        assert partial and all(color in c and (category in c or plural in c) for c in partial)
        assert not any(pattern_words.intersection(c.replace("-", " ").split()) for c in partial)
        for pattern in PATTERNS:
            full = captions(category, color, pattern)
            assert full and all(color in c and (category in c or plural in c) for c in full)
            assert all(pattern_words.intersection(c.replace("-", " ").split()) for c in full)


def test_ensure_demo_catalog_generates_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_demo_catalog(tmp_path, n_products=6, seed=2)
    assert first.is_file() and len(first.read_text().splitlines()) == 7

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated a catalog that was already complete")

    monkeypatch.setattr(demo, "generate_catalog", must_not_run)
    assert ensure_demo_catalog(tmp_path, n_products=6, seed=2) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.parent.name]  # no staging leftovers


def test_interrupted_generation_leaves_nothing_reusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = demo.generate_catalog

    def interrupted(out_dir: Path, **kwargs) -> Path:
        real(out_dir, **{**kwargs, "n_products": 2})
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "generate_catalog", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_catalog(tmp_path, n_products=6, seed=2)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(demo, "generate_catalog", real)
    csv_path = ensure_demo_catalog(tmp_path, n_products=6, seed=2)
    assert len(csv_path.read_text().splitlines()) == 7


def test_default_cache_dir_follows_clipsearch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path))
    csv_path = ensure_demo_catalog(n_products=2, seed=0)
    assert csv_path.parent.parent == tmp_path


def test_brands_skus_and_descriptions_are_deterministic_and_leave_the_rest_alone(tmp_path: Path) -> None:
    products = make_products(400, seed=5)
    assert make_products(400, seed=5) == products
    assert len({p.sku for p in products}) == len(products)  # one SKU per product
    assert len({p.brand for p in products}) == len(demo.BRANDS)
    assert all(p.brand and p.sku and p.description for p in products)
    for p in products[:50]:
        assert (
            p.color in p.description
            and p.sku.split("-")[0] == "".join(c for c in p.brand.upper() if c.isalpha())[:3]
        )
    csv_path = generate_catalog(tmp_path, n_products=5, seed=5, image_size=32)
    rows = list(read_catalog(csv_path))
    assert [r.cells["sku"] for r in rows] == [p.sku for p in products[:5]]
    assert [r.cells["description"] for r in rows] == [p.description for p in products[:5]]


def test_shop_catalog_adds_photos_and_tags_without_changing_the_first(tmp_path: Path) -> None:
    shop = generate_catalog(
        tmp_path / "shop", n_products=6, seed=1, image_size=32, images_per_product=3, tags=True
    )
    plain = generate_catalog(tmp_path / "plain", n_products=6, seed=1, image_size=32)
    rows = list(read_catalog(shop))
    assert [len(row.images) for row in rows] == [1, 2, 3, 1, 2, 3]
    pictures = [(shop.parent / image).read_bytes() for row in rows for image in row.images]
    assert len(set(pictures)) == len(pictures)  # every photo differs
    for row in rows:  # the first photo is the plain catalog's picture
        assert (shop.parent / row.images[0]).read_bytes() == (plain.parent / row.images[0]).read_bytes()
        tags = row.cells["tags"].split("|")
        assert tags[0] in {"summer", "winter", "all-season"} and len(set(tags)) == len(tags)
    assert demo.SHOP_SCHEMA["price"] == {"type": "float", "currency": "USD"}
