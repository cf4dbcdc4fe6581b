"""Hybrid queries: weighted texts and images, with negative terms.

"Like this photo, but red, not striped":

    Query.image("photo.jpg") + Query.text("red", 0.5) - Query.text("striped", 0.5)

Each part is embedded, weighted (negative parts get a negative weight), summed
and L2-normalized. Because CLIP puts texts and images in one space with unit
norm, the sum points between the parts, pulled by the larger weights; the
negative term pushes away from what it names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from clipsearch.errors import InternalError, InvalidArgumentError
from clipsearch.images import ImageInput

if TYPE_CHECKING:
    from clipsearch.types import Item


@dataclass(frozen=True)
class QueryPart:
    kind: str  # "text" or "image"
    content: str | ImageInput
    weight: float


@dataclass(frozen=True)
class Query:
    parts: tuple[QueryPart, ...] = field(default_factory=tuple)

    @classmethod
    def text(cls, text: str, weight: float = 1.0) -> Query:
        return cls((QueryPart("text", text, weight),))

    @classmethod
    def image(cls, image: ImageInput, weight: float = 1.0) -> Query:
        return cls((QueryPart("image", image, weight),))

    def __add__(self, other: Query) -> Query:
        return Query(self.parts + other.parts)

    def __sub__(self, other: Query) -> Query:
        return Query(self.parts + tuple(QueryPart(p.kind, p.content, -p.weight) for p in other.parts))

    def __mul__(self, factor: float) -> Query:
        return Query(tuple(QueryPart(p.kind, p.content, p.weight * factor) for p in self.parts))

    __rmul__ = __mul__

    @property
    def texts(self) -> list[QueryPart]:
        return [p for p in self.parts if p.kind == "text"]

    @property
    def images(self) -> list[QueryPart]:
        return [p for p in self.parts if p.kind == "image"]


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of unit vectors, L2-normalized. INVALID_ARGUMENT if it cancels out."""
    if len(vectors) == 0:
        raise InvalidArgumentError("a query needs at least one text or image", field="query")
    if not any(w > 0 for w in weights):
        raise InvalidArgumentError("a query needs at least one part with a positive weight", field="query")
    if len(vectors) == 1:  # the encoder's vector is already unit length (it owns normalization)
        return np.asarray(vectors[0], dtype=np.float32)
    summed = (np.asarray(weights, dtype=np.float32)[:, None] * np.asarray(vectors, dtype=np.float32)).sum(
        axis=0
    )
    norm = float(np.linalg.norm(summed))
    if norm < 1e-6:
        raise InvalidArgumentError("the query's parts cancel each other out", field="query")
    return (summed / norm).astype(np.float32)


def combine_parts(query: Query, vectors: list[np.ndarray]) -> np.ndarray:
    """Combines the embeddings of ``query.texts`` then ``query.images`` (in that order)."""
    weights = [p.weight for p in query.texts] + [p.weight for p in query.images]
    return combine(np.concatenate(vectors) if vectors else np.zeros((0, 0)), weights)


def text_contents(parts: Sequence[QueryPart]) -> list[str]:
    """The contents of :attr:`Query.texts` parts: strings, as :meth:`Query.text` builds them."""
    return [cast(str, p.content) for p in parts]


def query_words(query: Query) -> str:
    """The words a keyword or hybrid search looks for: the query's texts with positive weight
    (a negative part, "minus striped", is something the shopper does not want to match)."""
    return " ".join(cast(str, p.content) for p in query.texts if p.weight > 0)


def search_mode(mode: str, words: str) -> str:
    """The mode a search runs in: ``auto`` is hybrid when the query has words (the index runs a
    vector search on a collection without text fields), else vector."""
    if mode == "auto":
        return "hybrid" if words.strip() else "vector"
    if mode in ("keyword", "hybrid") and not words.strip():
        raise InvalidArgumentError(f"a {mode} search needs a text query", field="mode")
    return mode


def stored_vector(item: Item) -> np.ndarray:
    """The vector of an item fetched with ``include_vectors=True``; INTERNAL if the index left it out."""
    if item.vector is None:
        raise InternalError(f"the index returned item {item.id!r} without its vector")
    return item.vector


def page_without(hits: list, product: str, offset: int, k: int) -> list:
    """A page of more-like-this hits fetched from the top, with the item's product dropped.

    Fetching from rank 0 and dropping the product keeps pages aligned whether or not it
    matches the filter. ``product`` is the item's group, else its id (see ``Hit.product``).
    """
    return [hit for hit in hits if hit.product != product][offset : offset + k]


class Deadline:
    """One time budget for a composed call: each step gets what is left."""

    def __init__(self, timeout_s: float):
        self._expires = time.monotonic() + timeout_s

    def remaining(self) -> float:
        # A small positive floor lets the server answer DEADLINE_EXCEEDED itself.
        return max(self._expires - time.monotonic(), 0.001)
