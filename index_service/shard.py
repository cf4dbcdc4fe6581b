"""One shard: a FAISS index and the rows it holds, behind a readers-writer lock.

Searches take the read lock (so they run in parallel; FAISS releases the GIL), writes and
index swaps take the write lock briefly. Everything a search returns is resolved against
the rows while the read lock is held, so a hit is always a live item: labels the index
still holds for deleted items (HNSW cannot remove) are excluded by an ``IDSelector``, and
any label that is not alive is dropped before it leaves the shard.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from operator import itemgetter

import faiss
import numpy as np

from index_service import planner, rerank
from index_service.config import Metric, SearchParams
from index_service.filters import Filter, evaluate
from index_service.kinds import IndexKind, bitmap_selector, is_staging, search_parameters
from index_service.planner import DEFAULT_POLICY, IndexTraits, Plan, PlannerPolicy
from index_service.rows import RowTable
from index_service.rwlock import RWLock, check_may_wait
from index_service.topk import best

#: Fetches (labels, vectors) for labels from the store: exact searches and re-scoring.
VectorReader = rerank.VectorReader


#: One search candidate: (score, higher is closer; id; metadata JSON; group, "" for none).
Candidate = tuple[float, str, str, str]
#: Per query, the shard's best candidates in :mod:`~index_service.topk` order.
ShardResult = list[list[Candidate]]


class Shard:
    def __init__(
        self, number: int, kind: IndexKind, index: faiss.Index, rows: RowTable, *, dead_in_index: int
    ):
        self.number = number
        self.kind = kind
        self.index = index
        self.rows = rows
        #: Deleted items still inside an index that cannot remove ids (masked at search time).
        self.dead_in_index = dead_in_index
        self.lock = RWLock()
        #: Sequence number the shard's state reflects (what a snapshot of it covers).
        self.applied_seq = 0
        #: Writes since the last snapshot, and when that snapshot was taken.
        self.dirty = 0
        self.snapshot_time = time.monotonic()
        self._version = 0
        self._alive_cache: tuple[int, faiss.IDSelector, np.ndarray] | None = None
        #: Searches per planner strategy (a metric; approximate under concurrent searches).
        self.plan_counts: Counter[str] = Counter()
        #: What the planner needs of the index: worked out once per index (swap_index resets it).
        self._traits: IndexTraits | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def trained(self) -> bool:
        return not is_staging(self.index, self.kind)

    @property
    def exact(self) -> bool:
        return self.kind.exact or not self.trained

    @property
    def removable(self) -> bool:
        return self.kind.removable or not self.trained

    def needs_rebuild(self, dead_ratio: float) -> bool:
        if not self.trained:
            return self.rows.live >= self.kind.train_threshold
        return self.dead_in_index > 0 and self.dead_in_index >= dead_ratio * max(1, self.index.ntotal)

    # -- writes (caller holds the collection's write mutex) -----------------------------------

    def apply(
        self,
        sequence: int,
        removed: np.ndarray,
        labels: np.ndarray,
        vectors: np.ndarray,
        ids: list[str],
        metadata: list[str],
        groups: list[str] | None = None,
    ) -> None:
        with self.lock.write():
            if len(removed):
                killed = self.rows.kill(removed)
                if self.removable:
                    self.index.remove_ids(faiss.IDSelectorBatch(removed))
                else:
                    self.dead_in_index += killed
            if len(labels):
                self.index.add_with_ids(vectors, labels)
                self.rows.append(labels, ids, metadata, groups)
            if self.rows.needs_compaction():
                self.rows = self.rows.compacted()
            self.applied_seq = sequence
            self.dirty += len(removed) + len(labels)
            self._version += 1

    def update_metadata(
        self, sequence: int, labels: np.ndarray, metadata: list[str], groups: list[str] | None = None
    ) -> None:
        """New metadata (and groups) for live items, in place: the index and the labels are untouched."""
        with self.lock.write():
            rows = self.rows.rows_of(labels)
            if (rows < 0).any():
                raise RuntimeError(f"shard {self.number}: labels to update are not live here")
            self.rows.update(rows, metadata, groups)
            self.applied_seq = sequence
            self._version += 1

    def matching_ids(self, filter_: Filter | None) -> list[str]:
        """Ids of the live items the filter selects (all of them without one)."""
        with self.lock.read():
            rows = self.rows
            mask = evaluate(filter_, rows) if filter_ is not None else np.ones(rows.n, dtype=bool)
            return rows.selected_ids(mask)

    def count(self, filter_: Filter | None) -> int:
        with self.lock.read():
            rows = self.rows
            if filter_ is None:
                return rows.live
            return int((evaluate(filter_, rows) & rows.alive[: rows.n]).sum())

    def membership(self, filter_: Filter | None) -> Callable[[np.ndarray], np.ndarray]:
        """A test of labels: live here now and selected by ``filter_`` as it stands now (the
        keyword side's filter, the same the vector side's selector applies)."""
        selected = None
        if filter_ is not None:
            with self.lock.read():
                rows = self.rows
                selected = rows.labels[: rows.n][evaluate(filter_, rows) & rows.alive[: rows.n]]

        def test(labels: np.ndarray) -> np.ndarray:
            with self.lock.read():
                keep = self.rows.rows_of(labels) >= 0
            if selected is not None:
                keep &= np.isin(labels, selected)
            return keep

        return test

    def items(self, labels: np.ndarray) -> dict[int, tuple[str, str, str]]:
        """label -> (id, metadata JSON, group) of the labels live here."""
        with self.lock.read():
            rows = self.rows
            found = rows.rows_of(labels)
            return {
                int(label): (rows.ids[row], rows.metadata[row], rows.groups[row])
                for label, row in zip(labels, found, strict=True)
                if row >= 0
            }

    def set_folded(self, folded: frozenset[str]) -> None:
        """Case-insensitive fields changed (the schema grew): recode the strings of those with data."""
        if folded == self.rows.folded:
            return
        with self.lock.write():
            self.rows = self.rows.compacted(folded)
            self._version += 1

    def swap_index(self, index: faiss.Index, dead_in_index: int) -> None:
        """Installs a rebuilt index (built from the same live rows)."""
        with self.lock.write():
            self.index = index
            self._traits = None
            self.dead_in_index = dead_in_index
            self.dirty += 1
            self._version += 1

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter_: Filter | None,
        params: SearchParams,
        read_vectors: VectorReader,
        exact_fallback_max: int,
        plans: list[Plan] | None = None,
        policy: PlannerPolicy = DEFAULT_POLICY,
    ) -> ShardResult:
        """The best ``k`` per query; the plan it followed (index_service/planner.py) goes to ``plans``."""
        with self.lock.read():
            selector, keep, candidates = self._selection(filter_)
            width = min(k, candidates)
            if width == 0:
                return [[] for _ in range(len(queries))]
            traits = self._current_traits()
            plan = planner.choose(
                self.number,
                traits,
                candidates,
                self.rows.live,
                width,
                params.ef_search,
                params.nprobe,
                policy,
            )
            if plan.reranked:  # re-scores from the store, whatever the query: never on the event loop
                check_may_wait("the store", structural=True)
            elif plan.strategy == planner.EXACT and not traits.flat_storage:
                check_may_wait("the store")
            if policy is not planner.EXHAUSTIVE:
                self.plan_counts[plan.strategy] += 1
            if plans is not None:
                plans.append(plan)
            breadth = SearchParams(ef_search=plan.ef_search, nprobe=plan.nprobe)

            def run(rows: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
                search_params = search_parameters(self.index, selector, breadth.ef_search, breadth.nprobe)
                return self.index.search(queries[rows], w, params=search_params)

            def scan(rows: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
                return rerank.masked_scan(self.index, selector, queries[rows], w)

            if self.exact:
                distances, labels = _with_whole_ties(run, len(queries), width, candidates)
            elif plan.strategy == planner.EXACT and traits.flat_storage:
                distances, labels = _with_whole_ties(scan, len(queries), width, candidates)
            elif plan.strategy == planner.EXACT:
                distances, labels = self._exact(queries, width, filter_, read_vectors)
            elif plan.reranked:
                _, fetched = run(np.arange(len(queries)), min(plan.reranked, candidates))
                distances, labels = rerank.rescore(queries, fetched, read_vectors, width, self.kind.metric)
            else:
                distances, labels = run(np.arange(len(queries)), width)
            del keep
            short = (labels[:, :width] < 0).any()
            if (
                not self.exact
                and short
                and plan.strategy != planner.EXACT
                and candidates <= exact_fallback_max
            ):
                distances, labels = self._exact(queries, width, filter_, read_vectors)
            scores = -distances if self.kind.metric == Metric.L2 else distances
            return self._resolve(scores, labels, width)

    def _current_traits(self) -> IndexTraits:
        traits = self._traits
        if traits is None:  # under the read lock: swap_index, which resets it, holds the write lock
            traits = self._traits = rerank.traits_of(self.index, self.kind, self.exact)
        return traits

    def _selection(self, filter_: Filter | None) -> tuple[faiss.IDSelector | None, np.ndarray | None, int]:
        """(selector, buffer it reads, number of candidates) for this search."""
        rows = self.rows
        if filter_ is not None:
            selected = rows.labels[: rows.n][evaluate(filter_, rows) & rows.alive[: rows.n]]
            if len(selected) == 0:
                return None, None, 0
            selector, bitmap = bitmap_selector(selected)
            return selector, bitmap, len(selected)
        if self.dead_in_index == 0:
            return None, None, rows.live
        cached = self._alive_cache
        if cached is None or cached[0] != self._version:
            selector, bitmap = bitmap_selector(rows.live_labels())
            cached = self._alive_cache = (self._version, selector, bitmap)
        return cached[1], cached[2], rows.live

    def _exact(
        self, queries: np.ndarray, width: int, filter_: Filter | None, read_vectors: VectorReader
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the selected items' stored vectors, read from the store in chunks."""
        rows = self.rows
        mask = rows.alive[: rows.n].copy()
        if filter_ is not None:
            mask &= evaluate(filter_, rows)
        return rerank.exact_over(queries, rows.labels[: rows.n][mask], read_vectors, width, self.kind.metric)

    def _resolve(self, scores: np.ndarray, labels: np.ndarray, width: int) -> ShardResult:
        """Live items only, as candidates; the best ``width`` per query (exact searches may bring ties)."""
        rows_of = self.rows.rows_of(labels.ravel()).reshape(labels.shape)
        ids, metadata, groups = self.rows.ids, self.rows.metadata, self.rows.groups
        results: ShardResult = []
        for q in range(len(labels)):
            found = [
                (float(scores[q, j]), ids[row], metadata[row], groups[row])
                for j, row in enumerate(rows_of[q])
                if row >= 0
            ]
            if len(found) > width:
                found = best(found, width, score=itemgetter(0), id=itemgetter(1))
            results.append(found)
        return results


def _with_whole_ties(
    run: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    nq: int,
    width: int,
    candidates: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``width`` and every item tied with the ``width``-th, whatever order FAISS breaks ties in.

    FAISS keeps an arbitrary subset of the items tied at the k-th score. Fetching more until
    the last fetched score is strictly worse than the k-th guarantees every tied item is in
    hand; :func:`~index_service.topk.best` then picks among them by id, the same on every
    shard and run.
    """
    rows = np.arange(nq)
    fetch = min(width + 1, candidates)
    distances, labels = run(rows, fetch)
    while fetch > width:
        open_ = distances[rows, -1] == distances[rows, width - 1] if len(rows) else rows
        rows = rows[open_]
        if len(rows) == 0 or fetch == candidates:
            break
        fetch = min(2 * fetch, candidates)
        more_d, more_l = run(rows, fetch)
        pad = fetch - distances.shape[1]
        distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
        labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
        distances[rows], labels[rows] = more_d, more_l
    return distances, labels
