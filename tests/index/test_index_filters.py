"""Filters select inside the search: k filtered hits whenever k exist, equal to a brute-force oracle."""

from __future__ import annotations

import numpy as np
import pytest
from index_oracle import assert_matches, scores

from index_service.config import CollectionConfig, Metric, SearchParams
from index_service.filters import All, AnyOf, Equals, In, Not, Range, matches

pytestmark = pytest.mark.unit

COLORS = ["red", "green", "blue", "black"]

FILTERS = [
    Equals("color", "red"),
    Equals("in_stock", True),
    Equals("price", 7),
    In("color", ("green", "black", "nope")),
    In("size", (1, 3)),
    Range("price", gte=10, lt=12.5),
    Range("price", gt=48),
    Range("rating", lte=0.05),
    All((Equals("color", "blue"), Range("price", lt=20))),
    AnyOf((Equals("color", "red"), Equals("in_stock", False))),
    Not(Equals("color", "red")),
    Not(AnyOf((Range("price", lt=45), Equals("in_stock", True)))),
    All((Equals("sku", "s17"),)),  # exactly one item: the shortest way to starve a search
]


def _catalog(rng: np.random.Generator, n: int) -> list[dict]:
    catalog = []
    for i in range(n):
        item: dict = {"color": COLORS[i % 4], "price": float(rng.integers(0, 50)), "sku": f"s{i}"}
        if i % 3:
            item["in_stock"] = bool(i % 2)
        if i % 5:
            item["size"] = int(rng.integers(0, 4))
        if i % 7 == 0:
            item["rating"] = float(rng.random())
        catalog.append(item)
    return catalog


@pytest.mark.parametrize(("spec", "shards"), [("Flat", 1), ("Flat", 3), ("HNSW32", 2), ("IVF8,Flat", 2)])
def test_filtered_search_equals_the_oracle(open_engine, spec, shards):
    rng = np.random.default_rng(11)
    n, d = 1200, 16
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    catalog = _catalog(rng, n)
    ids = [f"f{i}" for i in range(n)]
    engine = open_engine(exact_fallback_max=0 if spec == "Flat" else 20_000)
    engine.create_collection(CollectionConfig("filtered", d, num_shards=shards, index_spec=spec))
    collection = engine.collection("filtered")
    collection.upsert(ids, vectors, catalog)
    collection.delete(ids[::10])
    while engine.maintain_once():
        pass
    live = [i for i in range(n) if i % 10]
    queries = rng.standard_normal((40, d)).astype(np.float32)
    reference = scores(queries, vectors, Metric.COSINE)
    exact = spec == "Flat"
    for filter_ in FILTERS:
        selected = [i for i in live if matches(filter_, catalog[i])]
        results = collection.search(queries, 10, filter_=filter_, params=SearchParams(ef_search=64, nprobe=2))
        for row, hits in enumerate(results):
            assert len(hits) == min(10, len(selected)), filter_
            assert all(matches(filter_, catalog[int(h.id[1:])]) for h in hits), filter_
            assert all(h.metadata == {k: v for k, v in catalog[int(h.id[1:])].items()} for h in hits)
            if exact:
                assert_matches(hits, [ids[i] for i in selected], reference[row, selected], 10)


def test_filters_on_fields_of_mixed_types(open_engine):
    """A collection made before schemas may hold one field with values of several types."""
    from legacy_collections import legacy_collection

    metadata = [{"v": "1"}, {"v": 1}, {"v": True}, {}, {"v": 1.5}]
    collection = legacy_collection(open_engine, "mixed", 2, metadata, num_shards=2)
    query = np.ones((1, 2), np.float32)

    def found(filter_):
        return sorted(h.id for h in collection.search(query, 10, filter_=filter_)[0])

    assert found(Equals("v", "1")) == ["m0"]
    assert found(Equals("v", 1)) == ["m1"]
    assert found(Equals("v", True)) == ["m2"]
    assert found(Range("v", gte=1)) == ["m1", "m4"]
    assert found(Not(Range("v", gte=1))) == ["m0", "m2", "m3"]
    assert found(In("v", ("1", True))) == ["m0", "m2"]
