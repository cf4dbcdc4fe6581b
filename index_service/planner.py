"""How one shard answers one search: exact over the selected items, a wider ANN walk, or ANN as is.

FAISS applies a filter by skipping unselected ids inside the search (``IDSelector``), so an
HNSW walk or an IVF probe sized for the whole index sees fewer selected neighbours than it
needs: at 10 % selectivity HNSW32 at ``efSearch`` 64 finds 0.89 of the true top 10. The
planner estimates the selectivity from the filter's row mask (already computed: it is the
bitmap the selector is made of) and picks, as Qdrant's cardinality planning does:

* ``exact``: few items selected (:attr:`PlannerPolicy.exact_items` or a fraction up to
  :attr:`PlannerPolicy.exact_fraction` where the full vectors are in memory,
  :attr:`PlannerPolicy.exact_read_items` where they are read from the store): brute force
  over them, recall 1;
* ``ann_widened``: a partial selection: the search breadth (``efSearch``, ``nprobe``) is
  divided by the selectivity, up to a cap, so the walk meets as many selected items as an
  unfiltered one would;
* ``ann``: (nearly) everything selected: the index as it is.

A compressed index (PQ, SQ, PCA) additionally fetches ``k x oversample`` candidates and
re-scores them with the full vectors (index_service/rerank.py). Plain data, no FAISS calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT = "exact"
ANN_WIDENED = "ann_widened"
ANN = "ann"
STRATEGIES = (EXACT, ANN_WIDENED, ANN)


@dataclass(frozen=True)
class PlannerPolicy:
    """Thresholds of the planner (flags of ``clipsearch serve index``; docs/index.md)."""

    #: Selected items up to which a search is brute force over them where the full vectors
    #: are in memory (Flat storage of HNSW): a masked scan of them.
    exact_items: int = 10_000
    #: ...and where they must be read from the store (compressed and IVF kinds).
    exact_read_items: int = 500
    #: Selected fraction up to which a search is brute force where the full vectors are in
    #: memory (Flat storage of HNSW): a masked scan then costs less than a walk that long.
    exact_fraction: float = 0.02
    #: Selected fraction from which the index is searched as it is.
    ann_fraction: float = 0.9
    #: Upper bound of the widened efSearch (HNSW).
    max_ef_search: int = 2048
    #: Candidates per hit a compressed index fetches for exact re-scoring (0: the spec's own).
    oversample: int = 0


DEFAULT_POLICY = PlannerPolicy()
#: Every search exact (the recall monitor's reference searches; not counted in the metric).
EXHAUSTIVE = PlannerPolicy(exact_items=2**62, exact_read_items=2**62, exact_fraction=1.0)
#: Re-scored candidates per wanted hit of a compressed index without ``Rerank<N>`` in its spec.
DEFAULT_OVERSAMPLE = 10
#: A widened plan of a compressed index re-scores up to this many times more candidates.
MAX_RERANK_WIDENING = 4.0


@dataclass(frozen=True)
class Plan:
    """What one shard did for one search, and why (SearchResponse debug info, a metric)."""

    shard: int
    strategy: str
    reason: str
    #: Live items the filter selects in the shard, and live items in the shard.
    selected: int
    total: int
    #: The breadth used (0: the index's own default, or not an HNSW/IVF index).
    ef_search: int = 0
    nprobe: int = 0
    #: Candidates re-scored with the full vectors per query (0: no re-scoring).
    reranked: int = 0

    @property
    def selectivity(self) -> float:
        return self.selected / self.total if self.total else 0.0


@dataclass(frozen=True)
class IndexTraits:
    """What the planner needs to know of a shard's index."""

    #: A brute-force index (Flat, or a trainable kind's Flat staging index).
    exact: bool
    #: Full vectors are in memory (Flat, HNSW over Flat storage): exact is a masked scan.
    flat_storage: bool
    #: Stores lossy codes (PQ, SQ, a PCA): candidates are re-scored with the full vectors.
    compressed: bool
    #: The index's default breadth: HNSW efSearch / IVF nprobe and lists (0: not that kind).
    ef_search: int = 0
    nprobe: int = 0
    nlist: int = 0
    #: Candidates per hit to re-score (the spec's ``Rerank<N>``; 0: the default).
    oversample: int = 0


def choose(
    shard: int,
    traits: IndexTraits,
    selected: int,
    total: int,
    width: int,
    ef_search: int = 0,
    nprobe: int = 0,
    policy: PlannerPolicy = DEFAULT_POLICY,
) -> Plan:
    """The plan for a search of ``width`` hits among ``selected`` of ``total`` live items.

    ``ef_search`` / ``nprobe``: what the request asked for (0: the index's default); a
    widened plan scales the larger of the two.
    """
    fraction = selected / total if total else 1.0
    rerank = _oversample(traits, policy) * width if traits.compressed else 0
    if traits.exact:
        return Plan(shard, EXACT, "the index is exact (Flat)", selected, total)
    if traits.flat_storage and selected <= policy.exact_items:
        why = f"{selected} items selected <= {policy.exact_items}: a masked scan of the vectors in memory"
        return Plan(shard, EXACT, why, selected, total)
    if traits.flat_storage and fraction <= policy.exact_fraction:
        why = (
            f"{fraction:.2%} selected <= {policy.exact_fraction:.2%}: a masked scan of the vectors in memory"
        )
        return Plan(shard, EXACT, why, selected, total)
    if not traits.flat_storage and selected <= policy.exact_read_items:
        why = f"{selected} items selected <= {policy.exact_read_items}: brute force over their stored vectors"
        return Plan(shard, EXACT, why, selected, total)
    base_ef = ef_search or traits.ef_search
    base_probe = nprobe or traits.nprobe
    if fraction >= policy.ann_fraction:
        why = f"{fraction:.1%} selected >= {policy.ann_fraction:.0%}: the index as it is"
        return Plan(shard, ANN, why, selected, total, base_ef, base_probe, rerank)
    scale = 1.0 / max(fraction, 1e-9)
    ef = min(max(base_ef, math.ceil(base_ef * scale)), max(policy.max_ef_search, base_ef)) if base_ef else 0
    probe = min(math.ceil(base_probe * scale), traits.nlist) if base_probe else 0
    probe = max(probe, base_probe) if base_probe else 0
    # A filter leaves fewer close items to tell apart by their codes: re-score more of them.
    rerank = round(rerank * min(scale, MAX_RERANK_WIDENING))
    why = f"{fraction:.1%} selected: search breadth x{scale:.1f} (capped)"
    return Plan(shard, ANN_WIDENED, why, selected, total, ef, probe, rerank)


def _oversample(traits: IndexTraits, policy: PlannerPolicy) -> int:
    return policy.oversample or traits.oversample or DEFAULT_OVERSAMPLE
