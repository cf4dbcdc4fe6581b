"""One bad collection never stops the index (issue item 2), over real gRPC.

On main, ``CreateCollection(index_spec="HNSW1000000000")`` was accepted, its first write
committed and failed to apply, and every start after it failed with ``std::bad_alloc``:
every other collection went down with it. ``IVF1000000000,Flat`` failed at create with
INTERNAL. Now: index specs follow a bounded grammar (index_service/specs.py); a committed
write that cannot be applied is undone in the store; a collection that cannot load is set
aside (quarantined) with its files while the others serve.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import index_pb2
from clipsearch.wire import vector_from_proto, vector_to_proto
from index_service.shard import Shard

pytestmark = pytest.mark.functional

DIM = 16


def _create(stub, name: str, spec: str = "Flat", **config) -> index_pb2.CollectionInfo:
    request = index_pb2.CreateCollectionRequest(
        config=index_pb2.CollectionConfig(name=name, dimension=DIM, index_spec=spec, **config)
    )
    return stub.CreateCollection(request, timeout=30).collection


def _items(prefix: str, n: int, seed: int = 0) -> list[index_pb2.Item]:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [index_pb2.Item(id=f"{prefix}{i}", vector=vector_to_proto(v)) for i, v in enumerate(vectors)]


def _code(call, request) -> tuple[str, object]:
    try:
        call(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code().name, from_rpc_error(exc)
    return "OK", None


@pytest.mark.parametrize(
    "spec",
    [
        "HNSW1000000000",  # accepted on main; its first write poisoned every start
        "IVF1000000000,Flat",  # INTERNAL at create on main
        "HNSW1",
        "HNSW129",
        "IVF65537,Flat",
        "IVF0,Flat",
        "IVF16,PQ4x16",  # 65536 centroids per sub-quantizer
        "PQ17",  # more sub-quantizers than dimensions
        "PCA999,Flat",
        "OPQ4_999,IVF16,PQ4",
        "PCA8,PCA8,PCA8,Flat",
        "IVF16,Flat,RFlat",
        "LSH",
        "HNSW" + "9" * 5000,
    ],
)
def test_index_specs_follow_a_bounded_grammar(server, spec) -> None:
    code, error = _code(
        server.stub.CreateCollection,
        index_pb2.CreateCollectionRequest(
            config=index_pb2.CollectionConfig(name="x", dimension=DIM, index_spec=spec)
        ),
    )
    assert code == "INVALID_ARGUMENT" and error.field == "config.index_spec", (code, error)
    assert not server.stub.ListCollections(index_pb2.ListCollectionsRequest(), timeout=30).collections


def test_every_kind_the_grammar_allows_builds_and_serves(server) -> None:
    specs = ["Flat", "HNSW16", "HNSW8,SQ8", "HNSW8_PQ4", "IVF4,Flat", "IVF4_HNSW8,SQ8", "IVF4,PQ4x4"]
    specs += ["PQ4", "SQ8", "SQfp16", "PCA8,Flat", "OPQ4_8,IVF4,PQ4", "L2norm,HNSW8"]
    for n, spec in enumerate(specs):
        _create(server.stub, f"k{n}", spec)
        server.stub.Upsert(index_pb2.UpsertRequest(collection=f"k{n}", items=_items("p", 20, n)), timeout=30)
        query = index_pb2.SearchRequest(collection=f"k{n}", queries=[_items("p", 1, n)[0].vector], k=3)
        assert len(server.stub.Search(query, timeout=30).results[0].hits) == 3, spec


def _files(folder) -> dict[str, bytes]:
    """The collection's files and their bytes (SQLite's -wal/-shm come and go with connections)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def _poison(data_dir, name: str, spec: str) -> None:
    """Rewrites a stopped collection's stored spec: what main accepted and then could not load."""
    with closing(sqlite3.connect(data_dir / "collections" / name / "store.sqlite")) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        config["index_spec"] = spec
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
        db.commit()


def test_a_collection_that_cannot_load_is_quarantined_while_the_others_serve(
    server, data_dir, caplog
) -> None:
    stub = server.stub
    _create(stub, "bad", "HNSW16")
    _create(stub, "good")
    stub.Upsert(index_pb2.UpsertRequest(collection="bad", items=_items("b", 10)), timeout=30)
    stub.Upsert(index_pb2.UpsertRequest(collection="good", items=_items("g", 10, 1)), timeout=30)
    server.stop()
    _poison(data_dir, "bad", "HNSW1000000000")
    files = _files(data_dir / "collections" / "bad")
    with caplog.at_level(logging.ERROR):
        server.start()  # on main: std::bad_alloc, and the index did not start at all
    stub = server.stub
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Reported: ListCollections, DescribeCollection, the log.
    listed = {
        c.config.name: c
        for c in stub.ListCollections(index_pb2.ListCollectionsRequest(), timeout=30).collections
    }
    assert set(listed) == {"bad", "good"} and not listed["good"].quarantine
    assert "HNSW links per vector" in listed["bad"].quarantine and listed["bad"].config.dimension == DIM
    described = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="bad"), timeout=30)
    assert described.collection.quarantine == listed["bad"].quarantine
    assert any("QUARANTINED" in r.getMessage() and "'bad'" in r.getMessage() for r in caplog.records)
    # Refused with the reason; the other collection serves; the files are untouched.
    query = index_pb2.SearchRequest(collection="bad", queries=[_items("b", 1)[0].vector], k=1)
    for call, request in [
        (stub.Search, query),
        (stub.Upsert, index_pb2.UpsertRequest(collection="bad", items=_items("b", 1))),
        (stub.Get, index_pb2.GetRequest(collection="bad", ids=["b0"])),
        (stub.Delete, index_pb2.DeleteRequest(collection="bad", ids=["b0"])),
        (
            stub.CreateCollection,
            index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="bad", dimension=DIM)),
        ),
    ]:
        code, error = _code(call, request)
        assert code in ("FAILED_PRECONDITION", "ALREADY_EXISTS") and "quarantined" in error.message, (
            code,
            error,
        )
    good = index_pb2.SearchRequest(collection="good", queries=[_items("g", 1, 1)[0].vector], k=1)
    assert stub.Search(good, timeout=30).results[0].hits[0].id == "g0"
    assert _files(data_dir / "collections" / "bad") == files
    # The operator's ways out: drop it (or restore its files and restart).
    assert stub.DropCollection(index_pb2.DropCollectionRequest(collection="bad"), timeout=30).dropped
    assert not (data_dir / "collections" / "bad").exists()
    _create(stub, "bad", "HNSW16")


def test_a_committed_write_that_cannot_be_applied_is_undone(server, monkeypatch) -> None:
    stub = server.stub
    _create(stub, "c", num_shards=2)
    first = _items("keep", 3, 1)
    stub.Upsert(index_pb2.UpsertRequest(collection="c", items=first), timeout=30)
    apply = Shard.apply

    def apply_failing(self, sequence, removed, labels, vectors, ids, *rest):
        if "poison" in ids:
            raise MemoryError("std::bad_alloc")  # what FAISS raised for HNSW1000000000
        return apply(self, sequence, removed, labels, vectors, ids, *rest)

    monkeypatch.setattr(Shard, "apply", apply_failing)
    replaced = _items("keep", 3, 2)  # new vectors for the same ids, and one item that cannot apply
    code, error = _code(
        stub.Upsert,
        index_pb2.UpsertRequest(
            collection="c", items=[*replaced, index_pb2.Item(id="poison", vector=replaced[0].vector)]
        ),
    )
    assert code == "RESOURCE_EXHAUSTED" and "undone" in error.message, (code, error)

    def stored() -> dict[str, np.ndarray]:
        got = stub.Get(
            index_pb2.GetRequest(
                collection="c",
                ids=["keep0", "keep1", "keep2", "poison"],
                include_vectors=True,
                missing_ok=True,
            ),
            timeout=30,
        )
        return {item.id: vector_from_proto(item.vector) for item in got.items}

    def assert_before_the_write() -> None:
        found = stored()
        assert set(found) == {"keep0", "keep1", "keep2"}
        for item in first:  # the vectors before the failed write (cosine: stored normalized)
            vector = vector_from_proto(item.vector)
            np.testing.assert_allclose(found[item.id], vector / np.linalg.norm(vector), rtol=1e-6)
        hits = stub.Search(
            index_pb2.SearchRequest(collection="c", queries=[first[1].vector], k=1), timeout=30
        )
        assert hits.results[0].hits[0].id == "keep1" and hits.results[0].hits[0].score > 0.999

    assert_before_the_write()
    monkeypatch.setattr(Shard, "apply", apply)
    server.restart()  # the store was not left holding the write
    stub = server.stub
    assert_before_the_write()
    stub.Upsert(
        index_pb2.UpsertRequest(collection="c", items=[index_pb2.Item(id="poison", vector=first[0].vector)]),
        timeout=30,
    )
    assert set(stored()) == {"keep0", "keep1", "keep2", "poison"}


def test_a_write_that_can_be_neither_applied_nor_undone_quarantines_only_its_collection(
    server, monkeypatch
) -> None:
    from index_service.store import Store

    stub = server.stub
    _create(stub, "c")
    _create(stub, "other")
    stub.Upsert(index_pb2.UpsertRequest(collection="other", items=_items("o", 2)), timeout=30)
    apply, undo = Shard.apply, Store.undo

    def fail(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(Shard, "apply", fail)
    monkeypatch.setattr(Store, "undo", fail)
    code, _ = _code(stub.Upsert, index_pb2.UpsertRequest(collection="c", items=_items("c", 2)))
    assert code == "INTERNAL"
    monkeypatch.setattr(Shard, "apply", apply)
    monkeypatch.setattr(Store, "undo", undo)
    code, error = _code(stub.Get, index_pb2.GetRequest(collection="c", ids=["c0"]))
    assert code == "FAILED_PRECONDITION" and "quarantined" in error.message
    described = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="c"), timeout=30)
    assert "nor undone" in described.collection.quarantine
    assert stub.Get(index_pb2.GetRequest(collection="other", ids=["o0", "o1"]), timeout=30).items
    server.restart()  # the store holds the write (it was committed); a restart loads it whole
    got = server.stub.Get(index_pb2.GetRequest(collection="c", ids=["c0", "c1"]), timeout=30)
    assert [item.id for item in got.items] == ["c0", "c1"]
