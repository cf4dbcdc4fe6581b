"""Brute-force reference results the index must match (numpy only)."""

from __future__ import annotations

import numpy as np

from index_service.config import Metric


def scores(queries: np.ndarray, vectors: np.ndarray, metric: Metric) -> np.ndarray:
    """(nq, n) float64 scores, higher is closer, computed exactly in float64."""
    q = queries.astype(np.float64)
    v = vectors.astype(np.float64)
    if metric == Metric.COSINE:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    if metric == Metric.L2:
        return -(((q[:, None, :] - v[None, :, :]) ** 2).sum(axis=2))
    return q @ v.T


def top_k(all_scores: np.ndarray, k: int, order: np.ndarray | None = None) -> np.ndarray:
    """Column indices of the best k per row: score descending, ties by ``order`` (default: index)."""
    n = all_scores.shape[1]
    tie = np.broadcast_to(np.arange(n) if order is None else order, all_scores.shape)
    return np.lexsort((tie, -all_scores), axis=-1)[:, :k]


def assert_matches(hits, ids: list[str], row_scores: np.ndarray, k: int, atol: float = 1e-4) -> None:
    """``hits`` (best first) equal the brute-force top-k, allowing any order among near-ties.

    Scores must agree within ``atol``; an id may differ from the reference only where the
    reference has another item whose score is within ``atol`` of it (a tie FAISS may break
    by rounding differently than float64).
    """
    ranked = np.argsort(-row_scores, kind="stable")
    expected = ranked[:k]
    assert len(hits) == min(k, len(ids)), (len(hits), k, len(ids))
    position = {item_id: i for i, item_id in enumerate(ids)}
    boundary = row_scores[expected[-1]] if len(expected) else 0.0
    got = [position[h.id] for h in hits]
    assert len(set(got)) == len(got), "duplicate ids in a result"
    for hit, index, want in zip(hits, got, expected, strict=True):
        assert abs(hit.score - row_scores[index]) <= atol, (hit.id, hit.score, row_scores[index])
        assert abs(hit.score - row_scores[want]) <= atol, (hit.score, row_scores[want])
    must = {int(i) for i in expected if row_scores[i] > boundary + atol}
    assert must <= set(got), "a clearly better item is missing"
