"""The data directory removed under a running index (issue item 5), over real gRPC.

On main, after ``rm -rf`` of the data dir health stayed SERVING and 10 of 10 Upserts were
acknowledged (SQLite writes on into unlinked files); after a restart they were gone. Now
the index notices before every write and after every commit: health turns NOT_SERVING,
writes are refused with UNAVAILABLE (retryable elsewhere), a CRITICAL log line names the
directory, reads still answer from memory, and nothing recreates the removed folders.
"""

from __future__ import annotations

import logging
import shutil
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.v1 import index_pb2
from clipsearch.wire import vector_to_proto

pytestmark = pytest.mark.functional

DIM = 8


def _items(prefix: str, n: int) -> list[index_pb2.Item]:
    vectors = np.random.default_rng(len(prefix) + n).standard_normal((n, DIM)).astype(np.float32)
    return [index_pb2.Item(id=f"{prefix}{i}", vector=vector_to_proto(v)) for i, v in enumerate(vectors)]


def _health(server) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="clipsearch.v1.IndexService"), timeout=10).status


def _create(stub, name: str) -> None:
    config = index_pb2.CollectionConfig(name=name, dimension=DIM, num_shards=2)
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config), timeout=30)


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_writes_are_refused_once_the_data_dir_is_gone(server_with, data_dir, caplog, how) -> None:
    server = server_with(snapshot_interval_s=0.05, snapshot_min_ops=1)
    stub = server.stub
    _create(stub, "c")
    stub.Upsert(index_pb2.UpsertRequest(collection="c", items=_items("a", 20)), timeout=30)
    with caplog.at_level(logging.CRITICAL):
        shutil.rmtree(data_dir)
        if how == "replaced":
            (data_dir / "collections").mkdir(parents=True)
        outcomes = []
        for n in range(10):  # at once, before any background check could have run
            try:
                stub.Upsert(index_pb2.UpsertRequest(collection="c", items=_items(f"b{n}-", 5)), timeout=30)
                outcomes.append("OK")
            except grpc.RpcError as exc:
                outcomes.append(exc.code().name)
                assert "data" in exc.details() and "refus" in exc.details(), exc.details()
    assert outcomes == ["UNAVAILABLE"] * 10, "a write was acknowledged into removed files"
    for call, request in [
        (stub.Delete, index_pb2.DeleteRequest(collection="c", ids=["a0"])),
        (
            stub.CreateCollection,
            index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="d", dimension=DIM)),
        ),
        (stub.DropCollection, index_pb2.DropCollectionRequest(collection="c")),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    deadline = time.monotonic() + 10
    while _health(server) != health_pb2.HealthCheckResponse.NOT_SERVING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _health(server) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert any(str(data_dir) in r.getMessage() and r.levelno == logging.CRITICAL for r in caplog.records)
    # Reads answer from memory (what was acknowledged before is still there to export).
    found = stub.Get(index_pb2.GetRequest(collection="c", ids=["a0", "a19"]), timeout=30)
    assert [item.id for item in found.items] == ["a0", "a19"]
    # Nothing writes into (or recreates) the removed directory: not the upkeep, not the stop.
    time.sleep(0.3)
    server.stop()
    left = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")) if data_dir.exists() else []
    assert left == ([] if how == "removed" else ["collections"]), left


def test_one_collections_folder_removed_quarantines_it_alone(server, data_dir) -> None:
    stub = server.stub
    _create(stub, "gone")
    _create(stub, "kept")
    for name in ("gone", "kept"):
        stub.Upsert(index_pb2.UpsertRequest(collection=name, items=_items(name, 4)), timeout=30)
    shutil.rmtree(data_dir / "collections" / "gone")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Upsert(index_pb2.UpsertRequest(collection="gone", items=_items("x", 1)), timeout=30)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)
    described = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="gone"), timeout=30)
    assert "removed" in described.collection.quarantine
    assert (
        stub.Upsert(index_pb2.UpsertRequest(collection="kept", items=_items("y", 2)), timeout=30).upserted
        == 2
    )
    assert _health(server) == health_pb2.HealthCheckResponse.SERVING
