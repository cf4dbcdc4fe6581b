"""Retrieval-quality figures over a demo catalog, defined once for training, tests and benchmarks.

The measurements take search callables, so the same definitions score an in-memory model
during training and the whole gRPC stack in `tests/demo` (-m quality) and `benchmarks/quality.py`.
Only numpy and Pillow are needed here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from clipsearch.apps.demo.catalog import Product, query_for

if TYPE_CHECKING:
    from clipsearch import Hit, SearchClient

#: Top-k ids for each query, in query order.
SearchTexts = Callable[[list[str], int], list[list[str]]]
SearchImages = Callable[[list[bytes], int], list[list[str]]]


@dataclass
class TextFigures:
    #: Categoryxcolor queries ("a red dress"), one per pair present in the catalog.
    pair_queries: int
    #: Fraction whose top-1 hit has the query's category and color.
    pair_top1: float
    #: Mean over pair queries of |top-k ∩ relevant| / min(k, |relevant|), relevant = same category+color.
    pair_precision_at_k: float
    #: Categoryxcolorxpattern queries ("a red striped dress"), one per combination present.
    exact_queries: int
    #: Fraction whose top-1 hit has the query's category, color and pattern.
    exact_top1: float
    k: int = 5
    #: The queries whose top-1 missed, with the title of what came first, for failure messages.
    pair_misses: list[str] = field(default_factory=list)
    exact_misses: list[str] = field(default_factory=list)


@dataclass
class ImageFigures:
    trials: int
    #: Fraction of degraded catalog images whose top-1 hit is the original product.
    top1: float
    misses: list[str] = field(default_factory=list)


def measure_text_queries(products: Sequence[Product], search: SearchTexts, k: int = 5) -> TextFigures:
    by_id = {p.id: p for p in products}
    pairs = sorted({(p.category, p.color) for p in products})
    exact = sorted({(p.category, p.color, p.pattern) for p in products})
    pair_results = search([query_for(c, k_) for c, k_ in pairs], k)
    exact_results = search([query_for(c, k_, pat) for c, k_, pat in exact], k)

    pair_misses: list[str] = []
    exact_misses: list[str] = []
    pair_hits, precisions = 0, []
    for (category, color), ids in zip(pairs, pair_results, strict=True):
        relevant = {p.id for p in products if p.category == category and p.color == color}
        top = [by_id[i] for i in ids[:1] if i in by_id]
        if top and (top[0].category, top[0].color) == (category, color):
            pair_hits += 1
        else:
            pair_misses.append(_miss(query_for(category, color), top))
        precisions.append(len(relevant.intersection(ids[:k])) / min(k, len(relevant)))
    exact_hits = 0
    for (category, color, pattern), ids in zip(exact, exact_results, strict=True):
        top = [by_id[i] for i in ids[:1] if i in by_id]
        if top and (top[0].category, top[0].color, top[0].pattern) == (category, color, pattern):
            exact_hits += 1
        else:
            exact_misses.append(_miss(query_for(category, color, pattern), top))
    return TextFigures(
        pair_queries=len(pairs),
        pair_top1=pair_hits / len(pairs),
        pair_precision_at_k=float(np.mean(precisions)),
        exact_queries=len(exact),
        exact_top1=exact_hits / len(exact),
        k=k,
        pair_misses=pair_misses,
        exact_misses=exact_misses,
    )


def measure_image_queries(
    products: Sequence[Product],
    images: Callable[[Product], Image.Image],
    search: SearchImages,
    *,
    trials: int = 100,
    seed: int = 0,
) -> ImageFigures:
    """Degrades ``trials`` catalog images (see `degrade`) and checks each finds its original first."""
    rng = np.random.default_rng([seed, 7])
    chosen = sorted(rng.choice(len(products), size=min(trials, len(products)), replace=False))
    queries = [degrade(images(products[i]), np.random.default_rng([seed, 8, int(i)])) for i in chosen]
    results = search(queries, 1)
    misses = [
        f"{products[i].id} ({products[i].title}) -> {ids[:1]}"
        for i, ids in zip(chosen, results, strict=True)
        if ids[:1] != [products[i].id]
    ]
    return ImageFigures(trials=len(chosen), top1=1 - len(misses) / len(chosen), misses=misses)


def degrade(
    image: Image.Image,
    rng: np.random.Generator,
    *,
    max_shift: float = 0.05,
    keep: tuple[float, float] = (0.90, 0.96),
    quality: tuple[int, int] = (20, 40),
) -> bytes:
    """A near-duplicate of ``image`` as a shopper's upload would be. By default: shifted by up to
    5% of its size, cropped to 90-96% of each side at a random offset, re-encoded as JPEG at
    quality 20-40 (training uses wider ranges)."""
    image = image.convert("RGB")
    width, height = image.size
    dx, dy = (rng.uniform(-max_shift, max_shift, size=2) * (width, height)).round().astype(int)
    shifted = Image.new("RGB", image.size, image.getpixel((0, 0)))
    shifted.paste(image, (int(dx), int(dy)))
    keep_w, keep_h = (rng.uniform(*keep, size=2) * (width, height)).round().astype(int)
    left = int(rng.integers(0, width - keep_w + 1))
    top = int(rng.integers(0, height - keep_h + 1))
    cropped = shifted.crop((left, top, left + int(keep_w), top + int(keep_h)))
    out = io.BytesIO()
    cropped.save(out, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
    return out.getvalue()


def _miss(query: str, top: list[Product]) -> str:
    return f"{query!r} -> {top[0].title if top else 'nothing'}"


# ----------------------------------------------------------------------------------------------
# The same figures through the SDK and both services


def products_from_csv(csv_path: Path) -> list[Product]:
    """The products of a generated catalog, read back from its CSV."""
    with Path(csv_path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Product(
            id=r["id"],
            title=r["title"],
            category=r["category"],
            color=r["color"],
            pattern=r["pattern"],
            price=float(r["price"]),
            seed=-1,
            index=i,
            brand=r.get("brand", ""),
            sku=r.get("sku", ""),
            description=r.get("description", ""),
        )
        for i, r in enumerate(rows)
    ]


class StackSearch:
    """Search callables over `SearchClient`; every hit's metadata is checked against its id."""

    def __init__(self, client: SearchClient, collection: str, products: Sequence[Product]):
        self.client = client
        self.collection = collection
        self.by_id = {p.id: p for p in products}
        #: Hits whose metadata disagrees with the catalog row of their id (id/metadata mix-ups).
        self.mismatches: list[str] = []
        self.returned_ids: set[str] = set()

    def texts(self, queries: list[str], k: int) -> list[list[str]]:
        return [self._ids(self.client.search_text(q, collection=self.collection, k=k)) for q in queries]

    def images(self, images: list[bytes], k: int) -> list[list[str]]:
        return [self._ids(self.client.search_image(i, collection=self.collection, k=k)) for i in images]

    def _ids(self, hits: list[Hit]) -> list[str]:
        for hit in hits:
            self.returned_ids.add(hit.id)
            product = self.by_id.get(hit.id)
            seen = tuple(hit.metadata.get(key) for key in ("title", "category", "color", "pattern"))
            if product is None or seen != (product.title, product.category, product.color, product.pattern):
                self.mismatches.append(f"{hit.id}: {seen}")
        return [hit.id for hit in hits]


def reupsert_csv(csv_path: Path, ids: set[str]) -> Path:
    """A catalog holding only the rows of ``ids``, beside the original (image paths stay valid)."""
    csv_path = Path(csv_path)
    out = csv_path.with_name(f"{csv_path.stem}-reupsert.csv")
    with (
        csv_path.open(newline="", encoding="utf-8") as src,
        out.open("w", newline="", encoding="utf-8") as dst,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or ()))
        writer.writeheader()
        writer.writerows(row for row in reader if row["id"] in ids)
    return out
