"""The FAISS side of a plan (index_service/planner.py): what an index is, masked scans, re-scoring.

* :func:`traits_of` tells the planner whether an index is exact, keeps its full vectors in
  memory (HNSW over Flat storage) or stores lossy codes (PQ, SQ, PCA);
* :func:`masked_scan` is brute force over the selected items of an HNSW index, run on its
  Flat storage through the id map (no copy, no read from the store);
* :func:`rescore` re-ranks a compressed index's candidates with the full vectors, read from
  the store (SQLite): docs/benchmarks.md, "Compressed indexes", measured that read against
  an mmap'd vector file.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from index_service.config import Metric
from index_service.kinds import DEFAULT_EF_SEARCH, IndexKind
from index_service.planner import IndexTraits

#: Fetches (labels found, their vectors) for labels (the store; deleted ones are left out).
VectorReader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def traits_of(index: faiss.Index, kind: IndexKind, exact: bool) -> IndexTraits:
    """What the planner needs to know of ``index`` (``exact``: a Flat or staging index)."""
    if exact:
        return IndexTraits(exact=True, flat_storage=True, compressed=False)
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    ef = nprobe = nlist = 0
    flat = False
    compressed = True
    if isinstance(inner, faiss.IndexHNSW):
        ef = max(inner.hnsw.efSearch, DEFAULT_EF_SEARCH)  # a snapshot saved when the default was 64
        storage = faiss.downcast_index(inner.storage)
        flat = isinstance(storage, faiss.IndexFlat)
        compressed = not flat
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        nprobe, nlist = ivf.nprobe, ivf.nlist
        compressed = not isinstance(inner, faiss.IndexIVFFlat)
    return IndexTraits(
        exact=False,
        flat_storage=flat,
        compressed=compressed,
        ef_search=ef,
        nprobe=nprobe,
        nlist=nlist,
        oversample=kind.rerank,
    )


def masked_scan(
    index: faiss.Index, selector: faiss.IDSelector | None, queries: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (distances, labels) over the selected items of an HNSW-over-Flat ``index``."""
    assert isinstance(index, faiss.IndexIDMap)  # HNSW cannot hold our ids itself
    inner = faiss.downcast_index(index.index)
    assert isinstance(inner, faiss.IndexHNSW)
    storage = faiss.downcast_index(inner.storage)
    id_map = index.id_map
    params = faiss.SearchParameters()
    # SWIG takes the id map's own vector (the stubs name only arrays and lists).
    translated = (
        faiss.IDSelectorTranslated(id_map, selector)  # type: ignore[arg-type]
        if selector is not None
        else None
    )
    params.sel = translated
    distances, positions = storage.search(queries, width, params=params)
    labels = faiss.rev_swig_ptr(id_map.data(), id_map.size())
    found = positions >= 0
    out = np.full(positions.shape, -1, dtype=np.int64)
    out[found] = labels[positions[found]]
    return distances, out


def rescore(
    queries: np.ndarray,
    labels: np.ndarray,
    read_vectors: VectorReader,
    width: int,
    metric: Metric,
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, labels) of the best ``width`` of each query's candidates by their full vectors.

    Every tie of the ``width``-th is kept (as :func:`exact_search`), so
    the shard's tie order by id applies. Candidates whose vector is gone (deleted meanwhile)
    are dropped.
    """
    wanted = np.unique(labels[labels >= 0])
    found, vectors = read_vectors(wanted)
    order = np.argsort(found)
    found, vectors = found[order], vectors[order]
    rows_d: list[np.ndarray] = []
    rows_l: list[np.ndarray] = []
    for q in range(len(queries)):
        mine = labels[q][labels[q] >= 0]
        at = _present(found, mine)
        d, lab = exact_search(queries[q : q + 1], found[at], vectors[at], width, metric)
        rows_d.append(d[0])
        rows_l.append(lab[0])
    cols = max((len(r) for r in rows_l), default=width)
    out_d = np.full((len(queries), cols), np.inf, dtype=np.float32)
    out_l = np.full((len(queries), cols), -1, dtype=np.int64)
    for q, (d, lab) in enumerate(zip(rows_d, rows_l, strict=True)):
        out_d[q, : len(d)] = d
        out_l[q, : len(lab)] = lab
    return out_d, out_l


def _present(found: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in sorted ``found`` of the ``wanted`` labels it holds."""
    at = np.searchsorted(found, wanted)
    ok = at < len(found)
    ok[ok] = found[at[ok]] == wanted[ok]
    return at[ok]


#: Stored vectors an exact search reads from the store at a time (32 MB at 512-d).
READ_CHUNK = 16_384


def exact_over(
    queries: np.ndarray, labels: np.ndarray, read_vectors: VectorReader, width: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_search` over the stored vectors of ``labels``, read a chunk at a time."""
    distances, found = exact_search(
        queries, labels[:0], np.zeros((0, queries.shape[1]), np.float32), width, metric
    )
    for start in range(0, len(labels), READ_CHUNK):
        got, vectors = read_vectors(labels[start : start + READ_CHUNK])
        d, lab = exact_search(queries, got, vectors, width, metric)
        distances, found = keep_best(np.hstack([distances, d]), np.hstack([found, lab]), width, metric)
    return distances, found


def keep_best(
    distances: np.ndarray, labels: np.ndarray, width: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best ``width`` (distances, labels) and every tie of the ``width``-th; -1 pads."""
    key = np.where(labels >= 0, distances if metric == Metric.L2 else -distances, np.inf)
    order = np.argsort(key, axis=-1, kind="stable")
    ranked = np.take_along_axis(key, order, axis=1)
    cut = ranked[:, min(width, key.shape[1]) - 1 : min(width, key.shape[1])] if key.shape[1] else ranked
    kept = ((ranked <= cut) & np.isfinite(ranked)).sum(axis=1)
    cols = max(int(kept.max()) if len(kept) else 0, 1)
    order = order[:, :cols]
    out_d = np.take_along_axis(distances, order, axis=1).astype(np.float32)
    out_l = np.take_along_axis(labels, order, axis=1)
    out_l[np.arange(cols)[None, :] >= kept[:, None]] = -1
    return out_d, out_l


def exact_search(
    queries: np.ndarray, labels: np.ndarray, vectors: np.ndarray, k: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS-style (distances, labels) by brute force: the best ``k`` and every item tied with the k-th.

    Rows are padded with label -1 (and NaN distances) where a query has fewer.
    """
    nq = len(queries)
    if len(labels) == 0:
        return np.full((nq, k), np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
    if metric == Metric.L2:
        distances = faiss.pairwise_distances(queries, vectors)
        order_key = distances
    else:
        distances = queries @ vectors.T
        order_key = -distances
    width = min(k, len(labels))
    order = np.argsort(order_key, axis=-1, kind="stable")
    ranked_key = np.take_along_axis(order_key, order, axis=1)
    kept = (ranked_key <= ranked_key[:, width - 1 : width]).sum(axis=1)  # >= width: the ties too
    order = order[:, : int(kept.max())]
    out_d = np.take_along_axis(distances, order, axis=1).astype(np.float32)
    out_l = labels[order]
    out_l[np.arange(order.shape[1])[None, :] >= kept[:, None]] = -1
    return out_d, out_l
