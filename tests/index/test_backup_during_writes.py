"""A backup taken while writes go on holds every write acknowledged before it and no half write;
its restore on another server answers exactly as the data it holds says.

This is the short version; ``python benchmarks/lifecycle.py backup`` runs it at scale and
reports the backup rate and the restore time (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from harness import ServerThread

from clipsearch import IndexClient

pytestmark = pytest.mark.reliability

D, BATCH = 16, 50


def _batch(number: int) -> tuple[list[str], np.ndarray]:
    vectors = np.random.default_rng(number).standard_normal((BATCH, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [f"b{number:05d}-{i:02d}" for i in range(BATCH)], vectors


def _server(path):
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    settings = IndexSettings(port=0, data_dir=path)
    return ServerThread(lambda: create_server(settings), name=path.name)


def test_backup_during_writes_restores_every_acknowledged_write(tmp_path) -> None:
    with _server(tmp_path / "live") as live, IndexClient(live.address) as client:
        client.create_collection("live", D, num_shards=2)
        acknowledged: list[int] = []
        stop = threading.Event()

        def write() -> None:
            with IndexClient(live.address) as writer:
                number = 0
                while not stop.is_set():
                    ids, vectors = _batch(number)
                    writer.upsert("live", ids, vectors, [{"batch": float(number)}] * BATCH)
                    acknowledged.append(number)
                    number += 1

        thread = threading.Thread(target=write)
        thread.start()
        while len(acknowledged) < 20:
            time.sleep(0.05)
        before = set(acknowledged)  # acknowledged before the backup call
        client.backup(tmp_path / "live.tar", collection="live")
        while len(acknowledged) < len(before) + 5:  # writes went on during and after it
            time.sleep(0.05)
        stop.set()
        thread.join()

    with _server(tmp_path / "restored") as second, IndexClient(second.address) as there:
        [info] = there.restore(tmp_path / "live.tar")
        restored = list(there.iter_items("live", include_vectors=True))
        batches = {int(item.id[1:6]) for item in restored}
        assert before <= batches, "every acknowledged write is in the backup"
        assert info.item_count == len(restored) == BATCH * len(batches), "no batch is half in it"
        assert batches == set(range(len(batches))), "the backup is a prefix of the writes"
        by_id = {item.id: item for item in restored}
        oracle_ids, oracle_vectors = [], []
        for number in sorted(batches):
            ids, vectors = _batch(number)
            for item_id, vector in zip(ids, vectors, strict=True):
                np.testing.assert_allclose(by_id[item_id].vector, vector, rtol=1e-6)
                assert by_id[item_id].metadata == {"batch": float(number)}
            oracle_ids += ids
            oracle_vectors.append(vectors)
        matrix = np.concatenate(oracle_vectors)
        for query in np.random.default_rng(99).standard_normal((10, D)).astype(np.float32):
            query /= np.linalg.norm(query)
            scores = matrix @ query
            expected = [oracle_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
            assert [h.id for h in there.search("live", query, k=10)] == expected
