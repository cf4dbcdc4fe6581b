"""Sharded exact search equals numpy brute force: thousands of queries, every metric, ties."""

from __future__ import annotations

import numpy as np
import pytest
from index_oracle import assert_matches, scores, top_k

from index_service.config import CollectionConfig, Metric

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("metric", [m for m in Metric if m != Metric.UNSPECIFIED])
@pytest.mark.parametrize("shards", [1, 2, 4])
def test_flat_equals_brute_force_on_thousands_of_queries(engine, metric, shards):
    rng = np.random.default_rng(shards * 10 + metric)
    n, d = 1500, 24
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    ids = [f"item-{i}" for i in range(n)]
    name = f"flat{shards}{metric.name}"
    engine.create_collection(CollectionConfig(name, d, metric=metric, num_shards=shards))
    collection = engine.collection(name)
    for start in range(0, n, 400):
        collection.upsert(ids[start : start + 400], vectors[start : start + 400])
    # Replace some vectors and delete others, so labels and shards have churned.
    vectors[:100] = rng.standard_normal((100, d)).astype(np.float32)
    collection.upsert(ids[:100], vectors[:100])
    collection.delete(ids[100:200])
    live = np.r_[0:100, 200:n]
    live_ids = [ids[i] for i in live]

    queries = rng.standard_normal((2000, d)).astype(np.float32)
    reference = scores(queries, vectors[live], metric)
    for start in range(0, len(queries), 250):
        results = collection.search(queries[start : start + 250], 10)
        for row, hits in enumerate(results):
            assert_matches(hits, live_ids, reference[start + row], 10)


def test_pagination_continues_the_ranking(engine):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    ids = [f"p{i}" for i in range(600)]
    engine.create_collection(CollectionConfig("pages", 16, num_shards=3))
    collection = engine.collection("pages")
    collection.upsert(ids, vectors)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    full = collection.search(queries, 40)
    for offset in (0, 10, 20, 25):
        page = collection.search(queries, 10, offset=offset)
        for whole, part in zip(full, page, strict=True):
            assert [h.id for h in part] == [h.id for h in whole[offset : offset + 10]]
    beyond = collection.search(queries[:1], 10, offset=595)
    assert len(beyond[0]) == 5


@pytest.mark.parametrize("metric", [Metric.INNER_PRODUCT, Metric.L2])
@pytest.mark.parametrize("shards", [1, 3])
def test_exact_ties_are_broken_by_id_like_the_reference(engine, metric, shards):
    """Small-integer vectors make every score exact, so many items tie exactly.

    The contract (index_service.topk): score descending, then the lower id first. The result
    must equal the reference exactly, ids and order, even when ties straddle shards and k,
    and whatever order the items were written in.
    """
    rng = np.random.default_rng(3 + shards)
    n, d = 800, 6
    vectors = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
    ids = [f"t{i:04d}" for i in rng.permutation(n)]  # id order unrelated to write order
    name = f"ties{shards}{metric.name}"
    engine.create_collection(CollectionConfig(name, d, metric=metric, num_shards=shards))
    collection = engine.collection(name)
    for start in range(0, n, 200):
        collection.upsert(ids[start : start + 200], vectors[start : start + 200])
    queries = rng.integers(-1, 2, size=(1000, d)).astype(np.float32)
    reference = scores(queries, vectors, metric)
    id_rank = np.argsort(np.argsort(ids))  # position of each item's id in id order
    for k in (1, 7, 50):
        expected = top_k(reference, k, order=id_rank)
        results = collection.search(queries, k)
        for row, hits in enumerate(results):
            assert [h.id for h in hits] == [ids[i] for i in expected[row]]
            assert [h.score for h in hits] == [float(reference[row, i]) for i in expected[row]]


def test_k_beyond_the_collection_and_empty_collections(engine):
    engine.create_collection(CollectionConfig("small", 4, num_shards=4))
    collection = engine.collection("small")
    query = np.ones((2, 4), dtype=np.float32)
    assert collection.search(query, 10) == [[], []]
    collection.upsert(["a", "b", "c"], np.eye(4, dtype=np.float32)[:3])
    hits = collection.search(query, 10_000)
    assert [sorted(h.id for h in row) for row in hits] == [["a", "b", "c"]] * 2
    collection.delete(["a", "b", "c"])
    assert collection.search(query, 5) == [[], []]
