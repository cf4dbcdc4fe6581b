"""Keyword and hybrid search: one page of hits from the vector and the keyword retrievals.

A search in these modes runs in two stages, so that the cluster can put the exact merge across
shard groups between them (docs/hybrid.md):

1. **Pools** (:meth:`Collection.text_candidates <index_service.collection.Collection.text_candidates>`):
   per query, the vector side's best ``width`` and the keyword side's best ``width`` (both
   under the same filter), each candidate scored by *both* sides where it can be (the vector
   score of a keyword hit, the BM25 of a vector hit) — a :class:`Pooled` list.
2. **The page** (:func:`results`): the pools of every shard group merged, cut to each side's
   best ``width`` again, then fused (:mod:`~index_service.fusion`) or, in keyword mode, ranked
   by the keyword side alone; grouped into products after fusion when asked.

No gRPC here (the core's rule): index_service/convert.py reads and checks the request.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter

from clipsearch.errors import InvalidArgumentError
from index_service import topk
from index_service.config import Explanation, Hit, HitGroup, MetadataValue
from index_service.fusion import Candidate, FusedHit, FusionMode, FusionParams, fuse
from index_service.limits import MAX_K, MAX_OFFSET, MAX_QUERIES

#: Candidates per side when the request does not say: enough for the fusion to reorder the
#: first page (docs/hybrid.md measures quality at 50).
DEFAULT_DEPTH = 50
#: Characters of one query text: a shopper's query, not a document.
MAX_TEXT_CHARS = 1024
#: Bounds of the fusion's numbers (a weight of 1e30 is a mistake, not a preference).
MAX_WEIGHT = 1000.0
MAX_RANK_CONSTANT = 1e6


class SearchMode(enum.IntEnum):
    """Same numbers as ``clipsearch.v1.SearchMode``."""

    VECTOR = 1
    KEYWORD = 2
    HYBRID = 3


@dataclass(frozen=True)
class TextQuery:
    """The keyword part of a search request (all its queries share it)."""

    mode: SearchMode
    #: The words of each query, one per query.
    texts: tuple[str, ...]
    fusion: FusionParams = field(default_factory=FusionParams)
    #: Candidates per side (0: :data:`DEFAULT_DEPTH`, and never fewer than the page needs).
    depth: int = 0
    #: BM25 weight per text or keyword field (1 for a field not named).
    field_weights: Mapping[str, float] = field(default_factory=dict)
    explain: bool = False

    def __post_init__(self) -> None:
        if not self.texts:
            raise InvalidArgumentError(
                "texts: keyword and hybrid searches need the query words", field="texts"
            )
        if len(self.texts) > MAX_QUERIES:
            raise InvalidArgumentError(
                f"texts: at most {MAX_QUERIES} per request, got {len(self.texts)}", field="texts"
            )
        for i, text in enumerate(self.texts):
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidArgumentError(
                    f"texts[{i}]: {len(text)} characters, over the limit of {MAX_TEXT_CHARS}",
                    field=f"texts[{i}]",
                )
        if not 0 <= self.depth <= MAX_K + MAX_OFFSET:
            raise InvalidArgumentError(
                f"hybrid.depth must be in [0, {MAX_K + MAX_OFFSET}], got {self.depth}", field="hybrid.depth"
            )
        for name, weight in self.field_weights.items():
            if not (math.isfinite(weight) and 0 <= weight <= MAX_WEIGHT):
                raise InvalidArgumentError(
                    f"hybrid.field_weights[{name}] must be in [0, {MAX_WEIGHT:g}], got {weight}",
                    field=f"hybrid.field_weights[{name}]",
                )

    def width(self, wanted: int) -> int:
        """Candidates per side for a page that needs ``wanted`` (k + offset) hits."""
        return min(max(wanted, self.depth or DEFAULT_DEPTH), MAX_K + MAX_OFFSET)


def fusion_params(
    *,
    weighted: bool,
    vector_weight: float | None,
    keyword_weight: float | None,
    rank_constant: float | None,
    boost_exact: bool | None,
) -> FusionParams:
    """Checked fusion settings (unset: the defaults); errors name the request field."""
    for name, value, bound in (
        ("vector_weight", vector_weight, MAX_WEIGHT),
        ("keyword_weight", keyword_weight, MAX_WEIGHT),
        ("rank_constant", rank_constant, MAX_RANK_CONSTANT),
    ):
        if value is not None and not (math.isfinite(value) and 0 <= value <= bound):
            raise InvalidArgumentError(
                f"hybrid.{name} must be in [0, {bound:g}], got {value}", field=f"hybrid.{name}"
            )
    v = 1.0 if vector_weight is None else vector_weight
    k = 1.0 if keyword_weight is None else keyword_weight
    if v + k == 0:
        raise InvalidArgumentError(
            "hybrid.vector_weight and hybrid.keyword_weight cannot both be 0", field="hybrid.vector_weight"
        )
    defaults = FusionParams()
    return FusionParams(
        mode=FusionMode.WEIGHTED if weighted else FusionMode.RRF,
        vector_weight=v,
        keyword_weight=k,
        rank_constant=defaults.rank_constant if rank_constant is None else rank_constant,
        boost_exact=defaults.boost_exact if boost_exact is None else boost_exact,
    )


@dataclass(frozen=True)
class Pooled:
    """One candidate of one query, as a collection (or one shard group) scored it."""

    id: str
    #: Compact JSON, as the shards hold it.
    metadata: str
    group: str
    #: None where that side could not score it (no query vector; no query word in the item).
    vector_score: float | None
    keyword_score: float | None
    matched: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()


def results(
    pools: Sequence[Sequence[Pooled]],
    query: TextQuery,
    k: int,
    offset: int,
    width: int,
    group_size: int | None = None,
) -> tuple[list[list[Hit]] | list[list[HitGroup]], bool]:
    """(each query's page, whether a grouped page came back short of ``k + offset`` groups).

    ``pools``: each query's candidates, merged from every shard group (their ids are distinct).
    """
    pages: list = []
    short = False
    for pool in pools:
        ordered = ranked(pool, query, width, everything=group_size is not None)
        if group_size is None:
            pages.append([_hit(hit, item, query.explain) for hit, item in ordered[offset : offset + k]])
            continue
        groups = _groups(ordered, k + offset, group_size, query.explain)
        short = short or len(groups) < k + offset
        pages.append(groups[offset:])
    return pages, short


def ranked(
    pool: Sequence[Pooled], query: TextQuery, width: int, *, everything: bool = False
) -> list[tuple[FusedHit, Pooled]]:
    """The pool in page order: fused (hybrid) or by the keyword side (keyword mode). Without
    ``everything``, only as many as a page of ``width`` needs."""
    by_id = {item.id: item for item in pool}
    vector = topk.best(
        (item for item in pool if item.vector_score is not None),
        len(pool),
        score=attrgetter("vector_score"),
        id=attrgetter("id"),
    )
    keyword = sorted(
        (item for item in pool if item.keyword_score is not None),
        key=lambda item: (-len(item.matched), -(item.keyword_score or 0.0), item.id),
    )
    # The merged lists of several shard groups hold each group's best `width`: keep the best
    # `width` of each side overall (and every exact match), as one collection would.
    kept = {item.id for item in vector[:width]} | {
        item.id for i, item in enumerate(keyword) if i < width or item.exact
    }
    vector = [item for item in vector if item.id in kept]
    keyword = [item for item in keyword if item.id in kept]
    count = len(kept) if everything else min(width, len(kept))
    if query.mode == SearchMode.KEYWORD:
        fused = _keyword_order(keyword, query.fusion.boost_exact)[:count]
    else:
        fused = fuse(
            [Candidate(item.id, float(item.vector_score or 0.0)) for item in vector],
            [
                Candidate(item.id, float(item.keyword_score or 0.0), item.matched, item.exact)
                for item in keyword
            ],
            count,
            params=query.fusion,
        )
    return [(hit, by_id[hit.id]) for hit in fused]


def _keyword_order(keyword: list[Pooled], boost_exact: bool) -> list[FusedHit]:
    """Keyword mode: words matched, then BM25, then id (the lexical index's order); exact
    keyword matches first when boosted. The hit's score is its BM25."""
    hits = [
        FusedHit(
            id=item.id,
            score=float(item.keyword_score or 0.0),
            vector_score=None,
            keyword_score=item.keyword_score,
            vector_rank=None,
            keyword_rank=rank,
            matched=item.matched,
            exact=item.exact,
            boosted=boost_exact and bool(item.exact),
        )
        for rank, item in enumerate(keyword, start=1)
    ]
    return [h for h in hits if h.boosted] + [h for h in hits if not h.boosted]


def _groups(
    ordered: list[tuple[FusedHit, Pooled]], wanted: int, group_size: int, explain: bool
) -> list[HitGroup]:
    """The first ``wanted`` products in page order, each with its best ``group_size`` hits."""
    members: dict[str, list[Hit]] = {}
    for hit, item in ordered:
        key = item.group or item.id
        hits = members.get(key)
        if hits is None:
            if len(members) == wanted:
                continue
            hits = members[key] = []
        if len(hits) < group_size:
            hits.append(_hit(hit, item, explain))
    return [HitGroup(key, tuple(hits)) for key, hits in members.items()]


def _hit(hit: FusedHit, item: Pooled, explain: bool) -> Hit:
    metadata: dict[str, MetadataValue] = json.loads(item.metadata)
    explanation = None
    if explain:
        explanation = Explanation(
            vector_score=hit.vector_score,
            keyword_score=hit.keyword_score,
            vector_rank=hit.vector_rank,
            keyword_rank=hit.keyword_rank,
            fused_score=hit.score,
            matched_terms=hit.matched,
            exact_fields=hit.exact,
            boosted=hit.boosted,
        )
    return Hit(item.id, hit.score, metadata, item.group, explanation)


def explained(hits: Sequence[Hit], offset: int) -> list[Hit]:
    """Vector-mode hits with their explanation (the vector side alone)."""
    return [
        Hit(
            h.id,
            h.score,
            h.metadata,
            h.group,
            Explanation(vector_score=h.score, vector_rank=offset + i + 1, fused_score=h.score),
        )
        for i, h in enumerate(hits)
    ]


def explained_groups(groups: Sequence[HitGroup], offset: int) -> list[HitGroup]:
    """Vector-mode products with explanations: ranks are the products' (their best hits')."""
    out = []
    for i, group in enumerate(groups):
        hits = explained(group.hits, 0)
        first = Explanation(vector_score=hits[0].score, vector_rank=offset + i + 1, fused_score=hits[0].score)
        best = replace(hits[0], explanation=first)
        out.append(HitGroup(group.group, (best, *hits[1:])))
    return out
