"""Cheap searches run on the event loop's thread (index_service/inline_search.py), over real gRPC.

What must hold: the answers are the same wherever the work ran; a search that would wait (a
write holding its shard) never waits on the loop's thread but on a worker, while the server
keeps answering; the cost estimate learns which searches are cheap and backs off from slow
ones; ``--inline-search-ms 0`` turns it off.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from clipsearch.filters import build_filter
from clipsearch.v1 import index_pb2
from clipsearch.wire import metadata_to_proto, vector_to_proto
from index_service.inline_search import MAX_INLINE_QUERIES, InlinePolicy
from index_service.rwlock import RWLock, WouldBlock, no_wait

pytestmark = pytest.mark.functional

DIM = 8
KEY = ("shop", False)


# -- the estimate ------------------------------------------------------------------------------


def test_unknown_searches_run_on_a_worker_first():
    policy = InlinePolicy(budget_s=0.001)
    assert not policy.should_inline(KEY, 1)
    policy.record(KEY, 1, 0.0002)
    assert policy.should_inline(KEY, 1)
    assert not policy.should_inline(("shop", True), 1), "a filtered search is learnt on its own"


def test_the_budget_is_per_request_and_bounded_in_queries():
    policy = InlinePolicy(budget_s=0.001)
    policy.record(KEY, 2, 0.0006)  # 0.3 ms a query
    assert policy.should_inline(KEY, 3)
    assert not policy.should_inline(KEY, 4), "4 x 0.3 ms is over the 1 ms budget"
    policy.record(KEY, 1, 0.0)
    policy = InlinePolicy(budget_s=1.0)
    policy.record(KEY, 1, 0.0)
    assert not policy.should_inline(KEY, MAX_INLINE_QUERIES + 1)
    assert not policy.should_inline(KEY, 0)


def test_slow_searches_raise_the_estimate_fast_and_cheap_ones_lower_it_slowly():
    policy = InlinePolicy(budget_s=0.001)
    policy.record(KEY, 1, 0.0002)
    policy.record(KEY, 1, 0.005)
    assert not policy.should_inline(KEY, 1), "one 5 ms search is enough to stop"
    cheap_runs = 0
    while not policy.should_inline(KEY, 1):
        policy.record(KEY, 1, 0.0002)
        cheap_runs += 1
        assert cheap_runs < 100
    assert cheap_runs >= 5, "one cheap search does not undo a slow one"


def test_a_search_that_would_wait_backs_off_then_tries_again():
    policy = InlinePolicy(budget_s=0.001)
    policy.record(KEY, 1, 0.0002)
    policy.record_blocked(KEY, structural=False)
    assert not policy.should_inline(KEY, 1)
    runs = 0
    while not policy.should_inline(KEY, 1):
        policy.record(KEY, 1, 0.0002)
        runs += 1
        assert runs < 100
    assert runs >= 10


def test_a_search_that_would_wait_every_time_never_runs_inline_again():
    policy = InlinePolicy(budget_s=0.001)
    policy.record(KEY, 1, 0.0002)
    policy.record_blocked(KEY, structural=True)
    for _ in range(500):
        policy.record(KEY, 1, 0.0)
    assert not policy.should_inline(KEY, 1)
    assert policy.should_inline(("other", False), 1) is False  # unknown, as ever


def test_a_zero_budget_never_runs_inline():
    policy = InlinePolicy(budget_s=0.0)
    policy.record(KEY, 1, 0.0)
    assert not policy.should_inline(KEY, 1)


# -- the lock ----------------------------------------------------------------------------------


def test_a_read_that_would_wait_raises_under_no_wait_and_waits_otherwise():
    lock = RWLock()
    with lock.read(), no_wait(), lock.read():
        pass  # readers never wait for readers
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with lock.write():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert held.wait(30)
    with pytest.raises(WouldBlock), no_wait(), lock.read():
        pass
    done = threading.Event()

    def reader() -> None:
        with lock.read():
            done.set()

    waiting = threading.Thread(target=reader)
    waiting.start()
    assert not done.wait(0.2), "a plain read waits for the writer"
    release.set()
    thread.join(30)
    waiting.join(30)
    assert done.is_set()
    with no_wait(), lock.read():
        pass  # nothing held: no wait, no error


# -- over gRPC ---------------------------------------------------------------------------------


def _fill(server, n: int = 400, shards: int = 1) -> np.ndarray:
    stub = server.stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(
            config=index_pb2.CollectionConfig(
                name="shop", dimension=DIM, index_spec="HNSW16", num_shards=shards
            )
        ),
        timeout=30,
    )
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    items = [
        index_pb2.Item(
            id=f"p{i}", vector=vector_to_proto(vectors[i]), metadata=metadata_to_proto({"cat": f"c{i % 4}"})
        )
        for i in range(n)
    ]
    stub.Upsert(index_pb2.UpsertRequest(collection="shop", items=items), timeout=30)
    return vectors


def _search(server, vector: np.ndarray, **fields) -> list[tuple[str, float]]:
    request = index_pb2.SearchRequest(collection="shop", queries=[vector_to_proto(vector)], k=5, **fields)
    response = server.stub.Search(request, timeout=30)
    return [(hit.id, hit.score) for hit in response.results[0].hits]


def _warmed(server_with):
    """A server that has learnt the unfiltered searches of a filled collection are cheap."""
    server = server_with(inline_search_ms=50.0)
    vectors = _fill(server)
    for q in vectors[:5]:
        _search(server, q)
    return server, vectors


def _runs(server) -> dict[str, int]:
    counters = server.thread.server.servicer.metrics.search_runs
    return {ran: int(counter._value.get()) for ran, counter in counters.items()}


def test_cheap_searches_run_inline_with_the_same_answers(server_with):
    inline_server = server_with(inline_search_ms=50.0)
    vectors = _fill(inline_server)
    queries = vectors[:20] + 0.01
    inline_answers = [_search(inline_server, q) for q in queries]
    runs = _runs(inline_server)
    assert runs["worker"] >= 1, "the first search of a kind is measured on a worker"
    assert runs["inline"] >= 15
    inline_server.stop()

    worker_server = server_with(inline_search_ms=0.0)
    assert [_search(worker_server, q) for q in queries] == inline_answers
    assert _runs(worker_server)["inline"] == 0


def test_filtered_searches_are_learnt_apart(server_with):
    server, vectors = _warmed(server_with)
    before = _runs(server)
    found = _search(server, vectors[1], filter=build_filter({"cat": "c1"}))
    assert found and all(int(item[1:]) % 4 == 1 for item, _ in found)
    assert _runs(server)["worker"] == before["worker"] + 1, "a filtered search's first run is measured"


def test_a_search_meeting_a_write_waits_on_a_worker_and_the_loop_keeps_answering(server_with):
    server, vectors = _warmed(server_with)
    expected = _search(server, vectors[7])
    shard = server.thread.server.engine.collection("shop").shards[0]
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with shard.lock.write():
            held.set()
            release.wait(60)

    thread = threading.Thread(target=writer)
    thread.start()
    assert held.wait(30)
    answers: list = []
    searcher = threading.Thread(target=lambda: answers.append(_search(server, vectors[7])))
    searcher.start()
    try:
        searcher.join(1.0)
        assert searcher.is_alive(), "the search waits for the write"
        # The event loop is free: other calls are answered meanwhile.
        described = server.stub.DescribeCollection(
            index_pb2.DescribeCollectionRequest(collection="shop"), timeout=10
        )
        assert described.collection.config.name == "shop"
    finally:
        release.set()
        thread.join(30)
        searcher.join(30)
    assert answers == [expected]
    assert _runs(server)["worker_after_wait"] == 1


def test_big_requests_never_run_inline(server_with):
    server, vectors = _warmed(server_with)
    before = _runs(server)
    wide = index_pb2.SearchRequest(collection="shop", queries=[vector_to_proto(vectors[0])], k=300)
    assert len(server.stub.Search(wide, timeout=30).results[0].hits) == 300
    deep = index_pb2.SearchRequest(
        collection="shop",
        queries=[vector_to_proto(vectors[0])],
        k=5,
        params=index_pb2.SearchParams(ef_search=2000),
    )
    server.stub.Search(deep, timeout=30)
    after = _runs(server)
    assert after["worker"] == before["worker"] + 2 and after["inline"] == before["inline"]


def test_a_collection_of_several_shards_stops_trying_inline(server_with):
    server = server_with(inline_search_ms=50.0)
    vectors = _fill(server, shards=3)
    answers = [_search(server, q) for q in vectors[:40]]
    runs = _runs(server)
    assert runs["worker_after_wait"] == 1, "the pool of shards is met once, then remembered"
    assert runs["inline"] == 0 and runs["worker"] == 39
    assert all(len(a) == 5 for a in answers)
