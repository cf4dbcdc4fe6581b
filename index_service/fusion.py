"""Hybrid ranking: one page of hits from a vector candidate list and a keyword candidate list.

Each list arrives already ranked by its own retrieval, filters applied (the vector side by
FAISS over the shards, merged by :mod:`~index_service.topk`; the keyword side by
:mod:`~index_service.lexical`). Two ways to combine them:

- **RRF** (reciprocal rank fusion, Cormack et al. 2009): ``w_v / (c + rank_v) + w_k / (c +
  rank_k)``, ranks from 1, a missing side adding nothing. It needs no score calibration
  between a cosine and a BM25, which is why it is the usual default. Items with equal scores
  in one list share that list's best rank among them (a tie carries no order to pass on).
- **Weighted**: each list's scores min-max normalised to [0, 1] over the list (a list whose
  scores are all equal gives them all 1), then ``w_v * v + w_k * k``. It keeps how far apart
  the scores are, which RRF throws away: a keyword hit that matches every word of the query
  stays far above one that matches a single word.

Both modes work on whatever lists they are given; the index gives each side's list the other
side's candidates too (the vector score of a keyword hit, the BM25 of a vector hit: cheap, at
most the two depths), so no candidate is fused with a missing score that is only missing
because the other retrieval stopped early (docs/hybrid.md measures the difference).

Exact keyword matches (a SKU typed whole) can be **boosted**: they come before every other
hit, in fused order among themselves. The page is then the best ``k`` after ``offset`` by
fused score descending, id ascending: the :mod:`~index_service.topk` rule, so hybrid pages
are as stable as vector ones. Whenever the two lists together hold ``offset + k`` distinct
items, the page has exactly ``k`` hits. Every hit carries its explanation: both sides'
scores and ranks, the fused score, the query terms it matched and the exact fields.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from index_service import topk


class FusionMode(enum.Enum):
    RRF = "rrf"
    WEIGHTED = "weighted"


@dataclass(frozen=True)
class Candidate:
    """One item of one side's list, in that list's rank order."""

    id: str
    score: float
    #: Keyword side: the query terms it matched (``rde→red``) and keyword fields matched whole.
    matched: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()


@dataclass(frozen=True)
class FusionParams:
    #: Weighted by default: on the demo catalog it beats RRF on every family (docs/hybrid.md).
    mode: FusionMode = FusionMode.WEIGHTED
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    #: RRF's ``c``: larger flattens the difference between the first ranks (60 in the paper).
    rank_constant: float = 60.0
    #: Exact keyword matches first.
    boost_exact: bool = True

    def __post_init__(self) -> None:
        if self.vector_weight < 0 or self.keyword_weight < 0 or self.vector_weight + self.keyword_weight == 0:
            raise ValueError("fusion weights must be >= 0 and not both 0")
        if self.rank_constant < 0:
            raise ValueError("rank_constant must be >= 0")


@dataclass(frozen=True)
class FusedHit:
    id: str
    #: What the page is ordered by (after the exact boost).
    score: float
    #: Each side's own score and 1-based rank; None where that side did not return the item.
    vector_score: float | None
    keyword_score: float | None
    vector_rank: int | None
    keyword_rank: int | None
    matched: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()
    #: Placed before the others as an exact keyword match.
    boosted: bool = False


def fuse(
    vector: Sequence[Candidate],
    keyword: Sequence[Candidate],
    k: int,
    *,
    offset: int = 0,
    params: FusionParams = FusionParams(),
) -> list[FusedHit]:
    """The best ``k`` fused hits after the first ``offset`` (module docstring)."""
    if k < 0 or offset < 0:
        raise ValueError("k and offset must be >= 0")
    vector_ranks, keyword_ranks = shared_ranks(vector), shared_ranks(keyword)
    if params.mode == FusionMode.RRF:
        v_part = {c.id: 1.0 / (params.rank_constant + r) for c, r in zip(vector, vector_ranks, strict=True)}
        k_part = {c.id: 1.0 / (params.rank_constant + r) for c, r in zip(keyword, keyword_ranks, strict=True)}
    else:
        v_part, k_part = normalised(vector), normalised(keyword)
    by_id_v = _first_by_id(vector, vector_ranks)
    by_id_k = _first_by_id(keyword, keyword_ranks)
    hits = []
    for item_id in dict.fromkeys([*by_id_v, *by_id_k]):
        v, kw = by_id_v.get(item_id), by_id_k.get(item_id)
        score = params.vector_weight * v_part.get(item_id, 0.0) + params.keyword_weight * k_part.get(
            item_id, 0.0
        )
        exact = kw[0].exact if kw is not None else ()
        hits.append(
            FusedHit(
                id=item_id,
                score=score,
                vector_score=v[0].score if v is not None else None,
                keyword_score=kw[0].score if kw is not None else None,
                vector_rank=v[1] if v is not None else None,
                keyword_rank=kw[1] if kw is not None else None,
                matched=kw[0].matched if kw is not None else (),
                exact=exact,
                boosted=params.boost_exact and bool(exact),
            )
        )
    boosted = [h for h in hits if h.boosted]
    rest = [h for h in hits if not h.boosted]
    ordered = _best(boosted, len(boosted)) + _best(rest, max(0, offset + k - len(boosted)))
    return ordered[offset : offset + k]


def shared_ranks(candidates: Sequence[Candidate]) -> list[int]:
    """1-based ranks in list order, equal neighbouring scores sharing the first one's rank."""
    ranks: list[int] = []
    for i, candidate in enumerate(candidates):
        tied = i > 0 and candidate.score == candidates[i - 1].score
        ranks.append(ranks[-1] if tied else i + 1)
    return ranks


def normalised(candidates: Sequence[Candidate]) -> dict[str, float]:
    """id -> score min-max scaled to [0, 1] over the list (all 1 when the scores are all equal)."""
    if not candidates:
        return {}
    scores = [c.score for c in candidates]
    low, high = min(scores), max(scores)
    spread = high - low
    out: dict[str, float] = {}
    for c in candidates:
        out.setdefault(c.id, (c.score - low) / spread if spread > 0 else 1.0)
    return out


def _first_by_id(candidates: Sequence[Candidate], ranks: list[int]) -> dict[str, tuple[Candidate, int]]:
    out: dict[str, tuple[Candidate, int]] = {}
    for candidate, rank in zip(candidates, ranks, strict=True):
        out.setdefault(candidate.id, (candidate, rank))
    return out


def _best(hits: Iterable[FusedHit], k: int) -> list[FusedHit]:
    return topk.best(hits, k, score=lambda h: h.score, id=lambda h: h.id)
