"""Collections as releases before schemas wrote them: items, and a config without a schema."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from index_service.collection import STORE_FILE, Collection, shard_of
from index_service.config import CollectionConfig
from index_service.engine import Engine
from index_service.rows import encode_metadata
from index_service.store import Store


def legacy_collection(
    open_engine: Callable[..., Engine],
    name: str,
    dimension: int,
    metadata: Sequence[dict[str, Any]],
    *,
    num_shards: int = 1,
) -> Collection:
    """A collection holding items ``m0, m1, ...`` (vectors of ones) whose values no schema checked.

    Written through the store, as the old write path did, then opened by a fresh engine.
    """
    engine = open_engine()
    engine.create_collection(CollectionConfig(name, dimension, num_shards=num_shards))
    path = engine.collection(name).path
    engine.close(snapshot=False)
    store = Store(path / STORE_FILE)
    assert store.config is not None and store.config.schema is None
    ids = [f"m{i}" for i in range(len(metadata))]
    vectors = (np.ones((len(ids), dimension)) / np.sqrt(dimension)).astype(np.float32)
    encoded = [
        encode_metadata({k: float(v) if type(v) is int else v for k, v in m.items()}) for m in metadata
    ]
    store.upsert(ids, [shard_of(i, num_shards) for i in ids], vectors, encoded, [""] * len(ids))
    store.close()
    return open_engine().collection(name)
