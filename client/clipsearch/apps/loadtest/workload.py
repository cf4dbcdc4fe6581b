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


#: Words of the generated head-heavy query vocabulary (--distinct): colour x pattern x item.
_COLOURS = ("red", "blue", "green", "black", "white", "yellow", "purple", "orange", "pink", "grey")
_PATTERNS = ("", "striped", "dotted", "plain", "floral", "checked", "denim", "leather", "wool", "silk")
_ITEMS = ("dress", "sneakers", "scarf", "t-shirt", "trousers", "handbag", "hat", "skirt", "jacket", "boots")


def generated_texts(count: int) -> list[str]:
    """``count`` distinct product queries (at most 1,000), in a fixed order: the Zipf ranks."""
    texts = [
        " ".join(word for word in (colour, pattern, item) if word)
        for pattern in _PATTERNS
        for colour in _COLOURS
        for item in _ITEMS
    ]
    if not 0 < count <= len(texts):
        raise InvalidArgumentError(f"--distinct: 1 to {len(texts)} generated queries", field="distinct")
    return texts[:count]


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
    #: Texts drawn by rank, the i-th (from 1) with weight 1 / i**zipf (head-heavy, as shoppers
    #: repeat the head queries); None: uniformly.
    zipf: float | None = None
    #: The modes text queries take turns in; with ("vector",) the calls are named as before.
    search_modes: tuple[str, ...] = ("vector",)

    def __post_init__(self) -> None:
        if any(self.mix.get(kind, 0) > 0 for kind in ("image", "hybrid")) and not self.images:
            raise InvalidArgumentError(
                "image and hybrid queries need query images: pass --images DIR or --catalog FILE",
                field="images",
            )
        if self.zipf is not None and self.zipf <= 0:
            raise InvalidArgumentError("--zipf: the exponent must be above 0 (e.g. 1.1)", field="zipf")
        self._random = random.Random(self.seed)
        self._kinds = list(self.mix)
        self._weights = [self.mix[k] for k in self._kinds]
        self._text_weights = (
            None if self.zipf is None else [1.0 / rank**self.zipf for rank in range(1, len(self.texts) + 1)]
        )
        self._turn = 0
        #: Texts sent so far (a repeat may come from the encoder's query cache).
        self._sent: set[str] = set()

    def next_text(self) -> tuple[str, bool]:
        """A query text, and whether it was drawn before in this run."""
        if self._text_weights is None:
            text = self._random.choice(self.texts)
        else:
            text = self._random.choices(self.texts, self._text_weights)[0]
        repeat = text in self._sent
        self._sent.add(text)
        return text, repeat

    def next_query(self) -> tuple[str, Query]:
        kind, query, _ = self.next_call()
        return kind, query

    def next_call(self) -> tuple[str, Query, bool]:
        """(call type, query, whether its text was sent before: False for image queries)."""
        kind = self._random.choices(self._kinds, self._weights)[0]
        if kind == "text":
            text, repeat = self.next_text()
            return kind, Query.text(text), repeat
        image = Query.image(self._random.choice(self.images))
        if kind == "image":
            return kind, image, False
        text, repeat = self.next_text()
        return kind, image + Query.text(text, 0.5), repeat

    def next_request(self) -> tuple[str, Query, str, bool]:
        """(call name, query, search mode, whether its text was sent before): a text query in the
        next of ``search_modes``, named ``text/<mode>`` when there is more than plain vector
        search; other kinds vector."""
        kind, query, repeat = self.next_call()
        if kind != "text" or self.search_modes == ("vector",):
            return kind, query, "vector", repeat
        mode = self.search_modes[self._turn % len(self.search_modes)]
        self._turn += 1
        return f"{kind}/{mode}", query, mode, repeat


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
