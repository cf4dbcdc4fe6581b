"""Many search threads and a writer at once: no crash, no -1 ids, no deleted id returned."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from index_service.config import CollectionConfig, SearchParams
from index_service.filters import Equals

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("spec", ["Flat", "HNSW32"])
def test_searches_and_a_writer_in_parallel(open_engine, spec):
    engine = open_engine(rebuild_dead_ratio=0.1)
    rng = np.random.default_rng(0)
    d = 16
    engine.create_collection(CollectionConfig("busy", d, num_shards=3, index_spec=spec))
    collection = engine.collection("busy")
    base = rng.standard_normal((1000, d)).astype(np.float32)
    collection.upsert([f"b{i}" for i in range(1000)], base, [{"even": i % 2 == 0} for i in range(1000)])
    # Ids named "gone-*" are written and deleted again; once deleted they must never be seen.
    deleted: set[str] = set()
    deleted_lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    searches = [0]

    def searcher(seed: int) -> None:
        local = np.random.default_rng(seed)
        while not stop.is_set():
            with deleted_lock:
                already = set(deleted)
            queries = local.standard_normal((4, d)).astype(np.float32)
            filter_ = Equals("even", True) if seed % 2 else None
            for hits in collection.search(queries, 25, filter_=filter_, params=SearchParams(ef_search=50)):
                got = [h.id for h in hits]
                if len(got) != 25 or len(set(got)) != 25:
                    failures.append(f"short or duplicated result {got}")
                if already & set(got):
                    failures.append(f"deleted ids returned: {already & set(got)}")
                if filter_ is not None and not all(h.metadata["even"] for h in hits):
                    failures.append("filter violated")
            searches[0] += 1

    def writer() -> None:
        local = np.random.default_rng(99)
        for round_ in range(60):
            batch = [f"gone-{round_}-{j}" for j in range(20)]
            vectors = base[local.integers(0, 1000, 20)] + 0.01  # close to real items: would rank high
            collection.upsert(batch, vectors, [{"even": True}] * 20)
            collection.delete(batch)
            with deleted_lock:
                deleted.update(batch)
            engine.maintain_once()  # rebuilds and snapshots race the searches too
        stop.set()

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(6)] + [
        threading.Thread(target=writer)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert searches[0] > 20
