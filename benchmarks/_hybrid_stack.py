"""Hybrid search over a demo catalog, in one process: what the index will do, without gRPC yet.

The demo model embeds the catalog's images (``encoder_service.model``, no server), a FAISS
flat inner-product index holds them, ``index_service.lexical`` indexes the catalog's text
fields in an SQLite file (the schema inferred from the CSV as ``clipsearch ingest`` infers
it), and ``index_service.fusion`` combines the two. ``search(query, k, mode)`` is the one
entry point ``benchmarks/quality.py`` scores; a server-backed class with the same method
(SearchRequest.mode once the contract has it, docs/hybrid.md) plugs in there.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from clipsearch.cells import infer_schema, schema_of
from index_service import topk
from index_service.fusion import Candidate, FusionMode, FusionParams, fuse
from index_service.lexical import Allowed, LexicalFields, LexicalIndex, SearchOptions

MODES = ("vector", "keyword", "hybrid")


class InProcessHybrid:
    def __init__(
        self,
        catalog: Path,
        *,
        model: str,
        pretrained: str,
        depth: int = 50,
        fusion: FusionParams | None = None,
        lexical: SearchOptions | None = None,
    ):
        from encoder_service.model import load_model

        self.catalog = Path(catalog)
        self.depth = depth
        #: Each side scores the other side's candidates too (docs/hybrid.md, "both scores").
        self.complete = True
        self.fusion = fusion or FusionParams()
        self.lexical_options = lexical or SearchOptions()
        with Path(catalog).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        self.ids = [row["id"] for row in rows]
        self.encoder = load_model(model, pretrained)
        pixels = []
        for row in rows:
            with Image.open(Path(catalog).parent / row["image"]) as image:
                pixels.append(self.encoder.preprocess_image(image.convert("RGB")))
        vectors = np.concatenate(
            [self.encoder.encode_images(pixels[i : i + 64]) for i in range(0, len(pixels), 64)]
        )
        self.vectors = faiss.IndexFlatIP(vectors.shape[1])
        self.vectors.add(vectors)

        columns = {name: [row[name] for row in rows] for name in rows[0] if name not in ("id", "image")}
        self.schema = schema_of(infer_schema(columns))
        self.lexical = LexicalIndex(LexicalFields.from_schema(self.schema))
        metadata = [{k: v for k, v in row.items() if k in columns and v} for row in rows]
        self.rows = [(i, row["id"], m) for i, (row, m) in enumerate(zip(rows, metadata, strict=True))]
        self.db = self.index_text()

    def index_text(self) -> sqlite3.Connection:
        """A fresh lexical index of the catalog's rows (analysis as it is now)."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")
        self.lexical.rebuild(db, self.rows)
        db.execute("COMMIT")
        return db

    def with_fusion(self, **changes) -> InProcessHybrid:
        """The same indexes, other fusion settings (a shallow copy: nothing is re-embedded)."""
        other = object.__new__(InProcessHybrid)
        other.__dict__.update(self.__dict__)
        other.fusion = replace(self.fusion, **changes)
        return other

    def _selection(self, allowed_ids: Collection[str] | None) -> tuple[np.ndarray | None, Allowed | None]:
        """(allowed labels, the lexical side's mask over labels) for a filter given as ids."""
        if allowed_ids is None:
            return None, None
        wanted = set(allowed_ids)
        labels = np.asarray(
            sorted(i for i, item_id in enumerate(self.ids) if item_id in wanted), dtype=np.int64
        )
        return labels, lambda asked: np.isin(asked, labels)

    def _vector(self, embedded: np.ndarray, width: int, labels: np.ndarray | None) -> dict[int, float]:
        """label -> inner product of the best ``width`` (of ``labels`` when given: FAISS's selector)."""
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(labels)) if labels is not None else None
        scores, found = self.vectors.search(embedded, min(width, self.vectors.ntotal), params=params)
        return {int(label): float(s) for s, label in zip(scores[0], found[0], strict=True) if label >= 0}

    def search(
        self, query: str, k: int, mode: str = "hybrid", *, allowed_ids: Collection[str] | None = None
    ) -> list[str]:
        """Ids of the best ``k`` for ``query`` in ``mode``; ``allowed_ids`` filters both sides."""
        if mode == "hybrid":
            return [h.id for h in self.explain(query, k, allowed_ids=allowed_ids)]
        labels, allowed = self._selection(allowed_ids)
        if mode == "vector":
            embedded = self.encoder.encode_texts(list(self.encoder.tokenize([query])))
            found = [Candidate(self.ids[label], s) for label, s in self._vector(embedded, k, labels).items()]
            return [c.id for c in topk.best(found, k, score=lambda c: c.score, id=lambda c: c.id)]
        hits = self.lexical.search(self.db, query, k, allowed=allowed, options=self.lexical_options)
        return [h.id for h in hits][:k]

    def explain(self, query: str, k: int, *, allowed_ids: Collection[str] | None = None) -> Sequence:
        """The hybrid page: both sides' candidates (filtered alike), each side scoring the
        other's too, fused."""
        width = max(k, self.depth)
        labels, allowed = self._selection(allowed_ids)
        embedded = self.encoder.encode_texts(list(self.encoder.tokenize([query])))
        vector_labels = self._vector(embedded, width, labels)
        keyword = self.lexical.search(self.db, query, width, allowed=allowed, options=self.lexical_options)
        if self.complete:
            seen = {h.label for h in keyword}
            keyword += self.lexical.score_items(
                self.db, query, [label for label in vector_labels if label not in seen], self.lexical_options
            )
            for h in keyword:
                if h.label not in vector_labels:
                    vector_labels[h.label] = float(embedded[0] @ self.vectors.reconstruct(h.label))
        keyword.sort(key=lambda h: (-len(h.matched), -h.score, h.id))
        vector = topk.best(
            (Candidate(self.ids[label], s) for label, s in vector_labels.items()),
            len(vector_labels),
            score=lambda c: c.score,
            id=lambda c: c.id,
        )
        lexical = [Candidate(h.id, h.score, h.matched, h.exact) for h in keyword]
        return fuse(vector, lexical, k, params=self.fusion)


__all__ = ["MODES", "FusionMode", "InProcessHybrid"]


#: What hybrid must reach per family (issue 17): an absolute top-1, or a share of vector-only's.
TARGETS = {
    "sku": ("top-1 >= 0.95", lambda figures: figures["hybrid"].top1 >= 0.95),
    "brand": ("top-1 >= 0.95", lambda figures: figures["hybrid"].top1 >= 0.95),
    "typo": ("top-1 >= 0.85", lambda figures: figures["hybrid"].top1 >= 0.85),
    "clean": (
        "top-1 >= 0.99 x vector",
        lambda figures: figures["hybrid"].top1 >= 0.99 * figures["vector"].top1,
    ),
    "clean+pattern": (
        "top-1 >= 0.99 x vector",
        lambda figures: figures["hybrid"].top1 >= 0.99 * figures["vector"].top1,
    ),
}


def without_variant_table(stack: InProcessHybrid, products: Sequence, *, seed: int = 0) -> list[str]:
    """The variant family again with ``analysis.VARIANTS`` emptied (re-indexed): what the table adds."""
    from clipsearch.apps.demo.hybrid_queries import build_queries, score
    from index_service import analysis

    queries = [q for q in build_queries(products, seed=seed) if q.family == "variant"]
    lines = []
    saved = dict(analysis.VARIANTS)
    try:
        for label, table in (("with the variant table", saved), ("without it", {})):
            analysis.VARIANTS.clear()
            analysis.VARIANTS.update(table)
            analysis.clear_caches()
            other = stack.with_fusion()
            other.db = stack.index_text()
            for mode in ("keyword", "hybrid"):
                f = score(queries, lambda q, k, o=other, m=mode: o.search(q, k, m))["variant"]
                lines.append(f"| {label} | {mode} | {f.top1:.3f} / {f.precision_at_5:.3f} |")
    finally:
        analysis.VARIANTS.clear()
        analysis.VARIANTS.update(saved)
        analysis.clear_caches()
    return ["| variant family | mode | top-1 / p@5 |", "|---|---|---|", *lines]


def measure(stack: InProcessHybrid, products: Sequence, *, seed: int = 0) -> tuple[list[str], bool]:
    """The family x mode table (markdown lines) and whether every target is met.

    Modes: vector, keyword, hybrid (the default fusion: weighted), and two variants of hybrid
    for the record: RRF, and weighted without each side scoring the other's candidates.
    """
    from clipsearch.apps.demo.hybrid_queries import build_queries, score

    queries = build_queries(products, seed=seed)
    partial = stack.with_fusion()
    partial.complete = False
    searchers = {
        "vector": lambda q, k: stack.search(q, k, "vector"),
        "keyword": lambda q, k: stack.search(q, k, "keyword"),
        "hybrid": lambda q, k: stack.search(q, k, "hybrid"),
        "hybrid RRF": lambda q, k: stack.with_fusion(mode=FusionMode.RRF).search(q, k, "hybrid"),
        "hybrid, one-sided scores": lambda q, k: partial.search(q, k, "hybrid"),
    }
    figures = {mode: score(queries, search) for mode, search in searchers.items()}
    families = list(figures["vector"])
    lines = [
        "| family | queries | "
        + " | ".join(f"{mode} top-1 / p@5" for mode in searchers)
        + " | target | met |",
        "|---|---|" + "---|" * len(searchers) + "---|---|",
    ]
    met = True
    for family in families:
        by_mode = {mode: figures[mode][family] for mode in searchers}
        target, check = TARGETS.get(family, ("", None))
        ok = check(by_mode) if check is not None else None
        met &= ok is not False
        cells = " | ".join(f"{f.top1:.3f} / {f.precision_at_5:.3f}" for f in by_mode.values())
        shown = "" if ok is None else "yes" if ok else "**no**"
        lines.append(f"| {family} | {by_mode['vector'].queries} | {cells} | {target} | {shown} |")
    return lines, met
