"""What the load tester sends: a weighted mix of text, image and hybrid queries."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import InvalidArgumentError
from clipsearch.query import Query

CALL_TYPES = ("text", "image", "hybrid")
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


@dataclass
class Workload:
    mix: dict[str, float]
    texts: list[str]
    images: list[bytes]
    seed: int = 0

    def __post_init__(self) -> None:
        if any(self.mix.get(kind, 0) > 0 for kind in ("image", "hybrid")) and not self.images:
            raise InvalidArgumentError(
                "image and hybrid queries need query images: pass --images DIR or --catalog FILE",
                field="images",
            )
        self._random = random.Random(self.seed)
        self._kinds = list(self.mix)
        self._weights = [self.mix[k] for k in self._kinds]

    def next_query(self) -> tuple[str, Query]:
        kind = self._random.choices(self._kinds, self._weights)[0]
        if kind == "text":
            return kind, Query.text(self._random.choice(self.texts))
        image = Query.image(self._random.choice(self.images))
        if kind == "image":
            return kind, image
        return kind, image + Query.text(self._random.choice(self.texts), 0.5)


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
