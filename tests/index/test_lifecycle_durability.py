"""Metadata updates, groups and aliases survive restarts, with or without a snapshot after them."""

from __future__ import annotations

import numpy as np
import pytest

from index_service.config import CollectionConfig
from index_service.filters import Equals

pytestmark = pytest.mark.unit

D = 4


@pytest.mark.parametrize("snapshot_between", [False, True])
@pytest.mark.parametrize("index_spec", ["Flat", "HNSW16"])
def test_updates_groups_and_aliases_survive_restarts(open_engine, snapshot_between, index_spec) -> None:
    engine = open_engine()
    engine.create_collection(CollectionConfig("c", D, num_shards=2, index_spec=index_spec))
    collection = engine.collection("c")
    vectors = np.random.default_rng(0).standard_normal((40, D)).astype(np.float32)
    ids = [f"i{n}" for n in range(40)]
    collection.upsert(
        ids,
        vectors,
        [{"color": "red", "n": float(n)} for n in range(40)],
        groups=[f"g{n // 4}" for n in range(40)],
    )
    if snapshot_between:
        collection.snapshot_all()  # the snapshot predates the update: the store replays it
    assert collection.update_metadata(groups=["g1"], set_={"color": "blue"}, unset=["n"]).count == 4
    engine.set_alias("front", "c")
    engine.close(snapshot=False)

    engine = open_engine()
    collection = engine.collection("front")
    assert collection.count(Equals("color", "blue")) == 4
    [item] = collection.get(["i5"], include_vectors=True)
    assert item.metadata == {"color": "blue"} and item.group == "g1"
    np.testing.assert_allclose(item.vector, vectors[5] / np.linalg.norm(vectors[5]), rtol=1e-6)
    groups = collection.search_groups(vectors[5:6], 3, 2)
    assert groups[0][0].group == "g1" and len({g.group for g in groups[0]}) == 3
    assert [a.alias for a in engine.list_aliases()] == ["front"]


def test_a_search_during_updates_sees_whole_items(engine) -> None:
    """Readers see an item's old metadata or its new metadata, never a mix."""
    import threading

    engine.create_collection(CollectionConfig("c", D))
    collection = engine.collection("c")
    vectors = np.random.default_rng(1).standard_normal((200, D)).astype(np.float32)
    collection.upsert([f"i{n}" for n in range(200)], vectors, [{"a": "0", "b": "0"}] * 200)
    stop = threading.Event()
    mixed: list = []

    def read() -> None:
        while not stop.is_set():
            for hit in collection.search(vectors[:4], 50)[0]:
                if hit.metadata["a"] != hit.metadata["b"]:
                    mixed.append(hit)

    reader = threading.Thread(target=read)
    reader.start()
    for round_ in range(1, 30):
        collection.update_metadata(
            filter_=Equals("a", str(round_ - 1)), set_={"a": str(round_), "b": str(round_)}
        )
    stop.set()
    reader.join()
    assert not mixed
    assert collection.count(Equals("a", "29")) == 200
