"""Restart recovery: snapshot + replay equals the store; torn, foreign or stale snapshots are refused."""

from __future__ import annotations

import numpy as np
import pytest

from index_service import snapshots
from index_service.config import CollectionConfig, Metric
from index_service.engine import DataDirLockedError, Engine, EngineOptions

pytestmark = pytest.mark.unit


def _state(collection, queries):
    return [
        [(h.id, round(h.score, 5), tuple(sorted(h.metadata.items()))) for h in hits]
        for hits in collection.search(queries, 15)
    ]


@pytest.mark.parametrize("spec", ["Flat", "HNSW32", "IVF4,Flat"])
def test_restart_replays_writes_after_the_snapshot(open_engine, spec):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1500, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(1500)]
    engine = open_engine(exact_fallback_max=0)
    engine.create_collection(CollectionConfig("keep", 8, metric=Metric.L2, num_shards=2, index_spec=spec))
    collection = engine.collection("keep")
    collection.upsert(ids[:1200], vectors[:1200], [{"n": i} for i in range(1200)])
    while engine.maintain_once():
        pass
    collection.snapshot_all()
    # After the snapshot: more upserts, replacements and deletes, never snapshotted.
    collection.upsert(ids[1200:], vectors[1200:], [{"n": i} for i in range(1200, 1500)])
    collection.upsert(ids[:50], vectors[:50] + 1, [{"n": -1}] * 50)
    collection.delete([*ids[50:150], "never-existed"])
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    before = _state(collection, queries)
    info = collection.info()
    engine.close(snapshot=False)  # like a kill: nothing more written

    reopened = open_engine().collection("keep")
    assert reopened.info() == info
    assert _state(reopened, queries) == before
    assert reopened.get(["r0"])[0].metadata == {"n": -1}
    assert not {h.id for hits in reopened.search(vectors[50:150], 5) for h in hits} & set(ids[50:150])


def _snapshot_files(data_dir):
    return sorted((data_dir / "collections" / "snap").glob("shard-*/snap-*.faiss"))


def _make(open_engine, rng):
    engine = open_engine()
    engine.create_collection(CollectionConfig("snap", 8, num_shards=1))
    collection = engine.collection("snap")
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    collection.upsert([f"s{i}" for i in range(200)], vectors[:200])
    collection.snapshot_all()
    collection.upsert([f"s{i}" for i in range(200, 300)], vectors[200:])
    collection.snapshot_all()
    collection.delete(["s0"])
    return engine, vectors


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_newest_snapshot_is_never_loaded(open_engine, data_dir, damage):
    engine, vectors = _make(open_engine, np.random.default_rng(4))
    engine.close(snapshot=False)
    _older, newest = _snapshot_files(data_dir)
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        newest.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    else:
        newest.write_bytes(b"")
    collection = open_engine().collection("snap")
    assert collection.info().item_count == 299
    assert newest.with_name(newest.name + ".invalid").exists()
    hits = collection.search(vectors[250:251], 1)[0]
    assert hits[0].id == "s250"  # replayed on top of the older snapshot
    assert "s0" not in {h.id for h in collection.search(vectors[:1], 10)[0]}


def test_stale_and_foreign_snapshots_are_refused(open_engine, data_dir):
    engine, _vectors = _make(open_engine, np.random.default_rng(6))
    collection = engine.collection("snap")
    shard_dir = _snapshot_files(data_dir)[0].parent
    payload = np.frombuffer(b"\x00" * 16, dtype=np.uint8)
    import faiss

    real = faiss.serialize_index(collection.shards[0].index)
    # Claims a sequence the database never reached (the database lost writes it covers).
    snapshots.write(shard_dir, 10**6, real, True, collection.store.uuid)
    # Belongs to another collection.
    snapshots.write(shard_dir, 10**5, payload, True, "0" * 32)
    engine.close(snapshot=False)
    reopened = open_engine().collection("snap")
    assert reopened.info().item_count == 299
    assert sorted(p.name for p in shard_dir.glob("*.invalid")) == [
        f"snap-{10**5:020d}.faiss.invalid",
        f"snap-{10**6:020d}.faiss.invalid",
    ]


def test_a_snapshot_missing_writes_it_claims_is_refused(open_engine, data_dir):
    engine, _ = _make(open_engine, np.random.default_rng(8))
    collection = engine.collection("snap")
    import faiss

    # A snapshot tagged with the latest sequence but holding an empty index.
    empty = faiss.serialize_index(collection.kind.new_index())
    snapshots.write(
        _snapshot_files(data_dir)[0].parent, collection.store.last_seq, empty, True, collection.store.uuid
    )
    engine.close(snapshot=False)
    reopened = open_engine().collection("snap")
    assert reopened.info().item_count == 299
    assert len(list(data_dir.glob("collections/snap/shard-*/*.invalid"))) == 1
    assert len(reopened.search(np.ones((1, 8), np.float32), 299)[0]) == 299


def test_one_server_per_data_directory(engine, data_dir):
    with pytest.raises(DataDirLockedError):
        Engine(EngineOptions(data_dir, background=False))


def test_drop_and_recreate_leave_no_old_state(open_engine, data_dir):
    engine = open_engine()
    engine.create_collection(CollectionConfig("again", 4))
    engine.collection("again").upsert(["a"], np.ones((1, 4), np.float32))
    engine.collection("again").snapshot_all()
    assert engine.drop_collection("again")
    engine.create_collection(CollectionConfig("again", 4))
    engine.close()
    assert open_engine().collection("again").info().item_count == 0
    assert list((data_dir / "trash").iterdir()) == []
