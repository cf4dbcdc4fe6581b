"""Index kinds: HNSW deletes are masked then rebuilt away, IVF trains by the documented rule."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.errors import InvalidArgumentError
from index_service.config import CollectionConfig, Metric, SearchParams
from index_service.kinds import IndexKind

pytestmark = pytest.mark.unit


def test_hnsw_never_returns_deleted_ids_and_rebuilds(open_engine):
    engine = open_engine(rebuild_dead_ratio=0.3, exact_fallback_max=0)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    ids = [f"h{i}" for i in range(2000)]
    engine.create_collection(CollectionConfig("graph", 16, num_shards=2, index_spec="HNSW32"))
    collection = engine.collection("graph")
    collection.upsert(ids, vectors)
    deleted = set(ids[:900])
    collection.delete(sorted(deleted))
    shards = collection.shards
    assert sum(s.dead_in_index for s in shards) == 900  # masked, not removed
    # Query with the deleted vectors themselves: the nearest neighbours are all deleted.
    for hits in collection.search(vectors[:900:7], 20, params=SearchParams(ef_search=128)):
        assert len(hits) == 20
        assert not deleted & {h.id for h in hits}
    assert engine.maintain_once()  # over the ratio: one shard rebuilt per pass
    while engine.maintain_once():
        pass
    assert all(s.dead_in_index == 0 and s.index.ntotal == s.rows.live for s in shards)
    hits = collection.search(vectors[900:901], 1)[0]
    assert hits[0].id == "h900"
    # Replacing a vector (a new label) masks the old one too.
    collection.upsert(["h900"], -vectors[900:901])
    assert collection.search(vectors[900:901], 1)[0][0].id != "h900"


def test_ivf_trains_once_a_shard_has_enough_vectors(engine):
    kind = IndexKind.describe("IVF32,PQ4x4", 16, Metric.L2)
    assert kind.trainable and kind.removable
    assert kind.train_threshold == max(1000, 39 * 32)
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((1500, 16)).astype(np.float32)
    ids = [f"v{i}" for i in range(1500)]
    engine.create_collection(CollectionConfig("ivf", 16, metric=Metric.L2, index_spec="IVF32,PQ4x4"))
    collection = engine.collection("ivf")
    collection.upsert(ids[:1000], vectors[:1000])
    assert not engine.maintain_once()  # 1000 < 1248: stays exact
    assert not collection.info().shards[0].trained
    exact = collection.search(vectors[:5], 1)
    assert [h[0].id for h in exact] == ids[:5]
    collection.upsert(ids[1000:], vectors[1000:])
    assert engine.maintain_once()
    assert collection.info().shards[0].trained
    collection.delete(ids[:10])
    approx = collection.search(vectors[:50], 10, params=SearchParams(nprobe=32))
    assert all(not {h.id for h in hits} & set(ids[:10]) for hits in approx)
    found = sum(hits[0].id == ids[i] for i, hits in enumerate(approx[10:], start=10))
    assert found >= 30  # PQ4x4 is coarse; most items still find themselves


def test_approximate_search_falls_back_to_exact_when_short(open_engine):
    engine = open_engine(exact_fallback_max=10_000)
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    engine.create_collection(CollectionConfig("short", 8, index_spec="HNSW16"))
    collection = engine.collection("short")
    collection.upsert([f"s{i}" for i in range(300)], vectors)
    hits = collection.search(vectors[:1], 300, params=SearchParams(ef_search=16))[0]
    assert len(hits) == 300


@pytest.mark.parametrize("spec", ["IDMap,Flat", "NotAnIndex", "IVF0,Flat"])
def test_bad_index_specs_are_invalid(engine, spec):
    with pytest.raises(InvalidArgumentError) as error:
        engine.create_collection(CollectionConfig("bad", 16, index_spec=spec))
    assert error.value.field == "config.index_spec"
