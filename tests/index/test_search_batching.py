"""Concurrent one-query searches merged into one (index_service/search_batcher.py), over real gRPC.

A gate holds the first search inside the engine, so the calls sent meanwhile queue up in the
batcher deterministically; then each merged call's answer must equal what the same request
gets alone, and only requests equal in every field but their vectors may share a batch.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from clipsearch._calls import from_rpc_error
from clipsearch.filters import build_filter
from clipsearch.v1 import index_pb2
from clipsearch.wire import metadata_from_proto, metadata_to_proto, vector_to_proto

pytestmark = pytest.mark.functional

DIM = 8


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


class SearchGate:
    """Holds the collection's first search until opened; records each search's query count."""

    def __init__(self, collection):
        self.collection = collection
        self.original = collection.search
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.sizes: list[int] = []
        collection.search = self._search

    def _search(self, queries, *args, **kwargs):
        self.sizes.append(len(queries))
        self.entered.set()
        if not self.opened.wait(timeout=60):
            raise RuntimeError("gate never opened")
        return self.original(queries, *args, **kwargs)

    def close(self) -> None:
        self.opened.set()
        self.collection.search = self.original


@pytest.fixture
def filled(server_with):
    # One merged search of a shape at a time: the gate then holds every other call in the queue.
    # The gate blocks inside the search: searches run on workers, never on the event loop.
    server = server_with(search_batch=64, search_batch_parallel=1, inline_search_ms=0.0)
    stub = server.stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="shop", dimension=DIM)),
        timeout=30,
    )
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    items = [
        index_pb2.Item(
            id=f"p{i}", vector=vector_to_proto(vectors[i]), metadata=metadata_to_proto({"cat": f"c{i % 3}"})
        )
        for i in range(300)
    ]
    stub.Upsert(index_pb2.UpsertRequest(collection="shop", items=items), timeout=30)
    return server


def request(vector, k=5, **fields) -> index_pb2.SearchRequest:
    return index_pb2.SearchRequest(collection="shop", queries=[vector_to_proto(vector)], k=k, **fields)


def hits(response) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 5)) for h in r.hits] for r in response.results]


def batcher_of(server):
    return server.thread.server.servicer.search_batcher


def queued(server) -> int:
    return sum(len(shape.waiting) for shape in batcher_of(server)._shapes.values())


def run_gated(server, first, others, queue=None):
    """Sends ``first``, holds it in the engine, sends ``others`` concurrently, then lets all go.

    Returns (the first's outcome, the others' outcomes, query counts of the engine's searches).
    """
    collection = server.thread.server.engine.collection("shop")
    gate = SearchGate(collection)
    try:
        first_future = server.stub.Search.future(first, timeout=60)
        assert gate.entered.wait(60)
        futures = [server.stub.Search.future(r, timeout=60) for r in others]
        wait_until(lambda: queued(server) == (len(others) if queue is None else queue))
        gate.opened.set()
        outcomes = []
        for future in [first_future, *futures]:
            try:
                outcomes.append(future.result())
            except grpc.RpcError as error:
                outcomes.append(from_rpc_error(error))
    finally:
        gate.close()
    return outcomes[0], outcomes[1:], gate.sizes


def test_concurrent_searches_run_as_one_and_answer_as_alone(filled) -> None:
    rng = np.random.default_rng(1)
    requests = [request(rng.standard_normal(DIM)) for _ in range(7)]
    alone = [hits(filled.stub.Search(r, timeout=30)) for r in requests]
    first, others, sizes = run_gated(filled, requests[0], requests[1:])
    assert sizes == [1, 6]  # the six sent while the first ran went as one search
    assert [hits(first), *[hits(o) for o in others]] == alone
    assert all(len(o.results) == 1 for o in others)


def test_only_requests_of_one_shape_share_a_search(filled) -> None:
    rng = np.random.default_rng(2)
    v = [rng.standard_normal(DIM) for _ in range(7)]
    cat = build_filter({"cat": "c1"})
    # While the first (k=3) is held: k=3 calls queue behind it, the k=4 call and the first
    # filtered call start at once (nothing of their shape runs), the other filtered calls queue.
    others = [
        request(v[1], k=3),
        request(v[2], k=3),
        request(v[3], k=4),
        request(v[4], k=3, filter=cat),
        request(v[5], k=3, filter=cat),
        request(v[6], k=3, filter=cat),
    ]
    alone = [hits(filled.stub.Search(r, timeout=30)) for r in others]
    _, outcomes, sizes = run_gated(filled, request(v[0], k=3), others, queue=4)
    assert sorted(sizes) == [1, 1, 1, 2, 2]  # no batch mixed k or filters
    assert [hits(o) for o in outcomes] == alone
    for outcome in outcomes[3:]:
        assert all(
            metadata_from_proto(hit.metadata)["cat"] == "c1" for r in outcome.results for hit in r.hits
        )


def test_a_bad_query_in_a_batch_fails_alone(filled) -> None:
    rng = np.random.default_rng(3)
    good = [request(rng.standard_normal(DIM)) for _ in range(3)]
    bad = request(np.array([np.nan] * DIM, dtype=np.float32))
    alone = [hits(filled.stub.Search(r, timeout=30)) for r in good[1:]]
    _, outcomes, sizes = run_gated(filled, good[0], [good[1], bad, good[2]])
    assert sizes[1] == 3 and sizes[2:] == [1, 1, 1]  # the merged search failed: each ran alone
    assert hits(outcomes[0]) == alone[0] and hits(outcomes[2]) == alone[1]
    error = outcomes[1]
    assert error.code.name == "INVALID_ARGUMENT" and error.field == "queries[0]", error
    assert batcher_of(filled).stats.split >= 1


def test_multi_query_and_grouped_requests_still_work(filled) -> None:
    rng = np.random.default_rng(4)
    two = index_pb2.SearchRequest(
        collection="shop", queries=[vector_to_proto(rng.standard_normal(DIM)) for _ in range(2)], k=3
    )
    assert len(filled.stub.Search(two, timeout=30).results) == 2
    grouped = request(rng.standard_normal(DIM), k=2, group_by=index_pb2.GroupBy(size=1))
    assert len(filled.stub.Search(grouped, timeout=30).results) == 1


def test_batches_of_one_shape_run_side_by_side_up_to_the_limit(server_with) -> None:
    server = server_with(search_batch=64, search_batch_parallel=2, inline_search_ms=0.0)  # the gate blocks
    stub = server.stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="shop", dimension=DIM)),
        timeout=30,
    )
    rng = np.random.default_rng(5)
    items = [index_pb2.Item(id=f"p{i}", vector=vector_to_proto(rng.standard_normal(DIM))) for i in range(50)]
    stub.Upsert(index_pb2.UpsertRequest(collection="shop", items=items), timeout=30)
    requests = [request(rng.standard_normal(DIM)) for _ in range(6)]
    alone = [hits(stub.Search(r, timeout=30)) for r in requests]
    collection = server.thread.server.engine.collection("shop")
    gate = SearchGate(collection)
    try:
        futures = [stub.Search.future(requests[0], timeout=60), stub.Search.future(requests[1], timeout=60)]
        wait_until(lambda: len(gate.sizes) == 2)  # both went at once, side by side
        futures += [stub.Search.future(r, timeout=60) for r in requests[2:]]
        wait_until(lambda: queued(server) == 4)
        gate.opened.set()
        assert [hits(f.result()) for f in futures] == alone
    finally:
        gate.close()
    assert gate.sizes[:2] == [1, 1] and sum(gate.sizes) == 6


def test_batching_is_off_by_default(server) -> None:
    assert server.thread.server.servicer.search_batcher is None
