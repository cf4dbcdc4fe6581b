"""What the load tester sends: a weighted mix of text, image and hybrid queries.

Text queries run in each of ``search_modes`` in turn (vector, keyword, hybrid or auto: the
index's retrieval, docs/hybrid.md), so the modes are measured side by side under the same
load; image and image+text ("hybrid" call type) queries are vector searches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import InvalidArgumentError
from clipsearch.query import Query

CALL_TYPES = ("text", "image", "hybrid")
SEARCH_MODES = ("auto", "vector", "keyword", "hybrid")
DEFAULT_TEXTS = (
    "a red dress",
    "blue sneakers",
    "a dotted yellow scarf",
    "a green striped t-shirt",
    "black trousers",
    "a white handbag",
    "a purple hat",
    "an orange skirt",
)


def parse_mix(text: str) -> dict[str, float]:
    """``text=0.6,image=0.3,hybrid=0.1`` -> normalized weights."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in CALL_TYPES:
            raise InvalidArgumentError(f"--mix: unknown call type {name!r}; use {CALL_TYPES}", field="mix")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise InvalidArgumentError(f"--mix: weight of {name} must be a number", field="mix") from None
    total = sum(mix.values())
    if total <= 0 or any(w < 0 for w in mix.values()):
        raise InvalidArgumentError("--mix: weights must be non-negative and not all zero", field="mix")
    return {name: weight / total for name, weight in mix.items()}


def parse_search_modes(text: str) -> tuple[str, ...]:
    """``vector,hybrid`` -> ("vector", "hybrid"): the modes text queries take turns in."""
    modes = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in modes if m not in SEARCH_MODES]
    if unknown or not modes:
        raise InvalidArgumentError(
            f"--search-mode: unknown mode {unknown[0] if unknown else text!r}; use {SEARCH_MODES}",
            field="search_mode",
        )
    return modes


def demo_queries(n_products: int, seed: int = 0) -> list[str]:
    """The texts of the demo catalog's hybrid query set (``clipsearch.apps.demo.hybrid_queries``:
    clean phrasings, typos, variant spellings, synonyms, SKUs, brand + category), for catalog
    ``seed`` of ``n_products`` products (``clipsearch demo`` ingests seed 0)."""
    from clipsearch.apps.demo.catalog import make_products
    from clipsearch.apps.demo.hybrid_queries import build_queries

    return [query.text for query in build_queries(make_products(n_products, seed), seed)]


@dataclass
class Workload:
    mix: dict[str, float]
    texts: list[str]
    images: list[bytes]
    seed: int = 0
    #: The modes text queries take turns in; with ("vector",) the calls are named as before.
    search_modes: tuple[str, ...] = ("vector",)

    def __post_init__(self) -> None:
        if any(self.mix.get(kind, 0) > 0 for kind in ("image", "hybrid")) and not self.images:
            raise InvalidArgumentError(
                "image and hybrid queries need query images: pass --images DIR or --catalog FILE",
                field="images",
            )
        self._random = random.Random(self.seed)
        self._kinds = list(self.mix)
        self._weights = [self.mix[k] for k in self._kinds]
        self._turn = 0

    def next_query(self) -> tuple[str, Query]:
        kind = self._random.choices(self._kinds, self._weights)[0]
        if kind == "text":
            return kind, Query.text(self._random.choice(self.texts))
        image = Query.image(self._random.choice(self.images))
        if kind == "image":
            return kind, image
        return kind, image + Query.text(self._random.choice(self.texts), 0.5)

    def next_request(self) -> tuple[str, Query, str]:
        """(call name, query, search mode): a text query in the next of ``search_modes``, named
        ``text/<mode>`` when there is more than plain vector search; other kinds vector."""
        kind, query = self.next_query()
        if kind != "text" or self.search_modes == ("vector",):
            return kind, query, "vector"
        mode = self.search_modes[self._turn % len(self.search_modes)]
        self._turn += 1
        return f"{kind}/{mode}", query, mode


def load_images(directory: Path | None, catalog: Path | None, limit: int = 64) -> list[bytes]:
    """Up to ``limit`` query images from a folder (jpg/png/webp) or a catalog's image column."""
    paths: list[Path] = []
    if directory is not None:
        paths = sorted(
            p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        )
    elif catalog is not None:
        from clipsearch.catalog import read_catalog
        from clipsearch.image_sources import ImageSources

        sources = ImageSources(catalog.resolve().parent)
        try:
            refs = [row.image for row in read_catalog(catalog) if row.error is None][:limit]
            return [image for image in sources.load_many(refs) if isinstance(image, bytes)]
        finally:
            sources.close()
    return [p.read_bytes() for p in paths[:limit]]
