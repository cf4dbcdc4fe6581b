"""Row checksums: a value corrupt on disk is refused (DATA_LOSS), never served; v1 files upgrade."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from clipsearch import DataLossError, FailedPreconditionError, IndexClient
from index_service.config import CollectionConfig
from index_service.store import SCHEMA_VERSION

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
DIM = 8


def _filled(open_engine, data_dir: Path) -> tuple[Path, np.ndarray]:
    """A closed collection 'c' of 50 items ('i0'..'i49', metadata {"tag": "t<i%3>"}), snapshotted."""
    vectors = np.random.default_rng(5).standard_normal((50, DIM)).astype(np.float32)
    engine = open_engine()
    engine.create_collection(CollectionConfig("c", DIM, num_shards=2))
    metadata = [{"tag": f"t{i % 3}"} for i in range(50)]
    engine.collection("c").upsert([f"i{i}" for i in range(50)], vectors, metadata)
    engine.close(snapshot=True)
    store = data_dir / "collections" / "c" / "store.sqlite"
    with closing(sqlite3.connect(store)) as db:  # everything into the main file, where we damage it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store, vectors


def _stored_vector(store: Path, item_id: str) -> bytes:
    with closing(sqlite3.connect(store)) as db:
        return db.execute("SELECT vector FROM items WHERE id = ?", (item_id,)).fetchone()[0]


def _flip(path: Path, needle: bytes, at: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(needle) + at] ^= mask
    path.write_bytes(bytes(data))


def test_a_corrupt_vector_is_data_loss_over_grpc(open_engine, data_dir, server_with):
    store, _ = _filled(open_engine, data_dir)
    _flip(store, _stored_vector(store, "i7"), 5)
    server = server_with()  # the snapshot holds the vector, so the server starts ...
    with IndexClient(server.address) as client:
        assert client.get("c", ["i8"], include_vectors=True)[0].id == "i8"
        with pytest.raises(DataLossError, match="fails its checksum"):  # ... and refuses the bad row
            client.get("c", ["i7"], include_vectors=True)


def test_corrupt_metadata_quarantines_the_collection_with_a_clear_error(open_engine, data_dir, caplog):
    store, _ = _filled(open_engine, data_dir)
    _flip(store, b'"tag":"t1"', 8)  # "t1" -> "t0": still valid JSON, only the checksum can tell
    engine = open_engine()  # the engine (and the server) start: the collection is set aside
    assert "fails its checksum" in str(engine._quarantined["c"].error)
    with pytest.raises(FailedPreconditionError, match=r"collection 'c' is quarantined.*fails its checksum"):
        engine.collection("c").get(["i1"])
    info = engine.describe("c")
    assert "fails its checksum" in info.quarantine and info.config.dimension == DIM
    assert any("QUARANTINED" in r.getMessage() and str(data_dir) in r.getMessage() for r in caplog.records)


def test_a_version_1_database_is_upgraded_in_place(open_engine, data_dir):
    store, vectors = _filled(open_engine, data_dir)
    before = _stored_vector(store, "i3")
    with closing(sqlite3.connect(store)) as db:  # rewrite it as version 1 wrote it: no checksums
        db.execute("ALTER TABLE items DROP COLUMN vector_crc")
        db.execute("ALTER TABLE items DROP COLUMN row_crc")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        db.commit()
    collection = open_engine().collection("c")
    got = collection.get(["i3", "i4"], include_vectors=True)
    assert [g.metadata for g in got] == [{"tag": "t0"}, {"tag": "t1"}]
    assert got[0].vector.astype("<f4").tobytes() == before
    assert collection.search(vectors[10:11], 1)[0][0].id == "i10"
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT count(*) FROM items WHERE row_crc = 0 OR vector_crc = 0").fetchone() == (0,)


def test_a_newer_schema_is_refused(open_engine, data_dir):
    store, _ = _filled(open_engine, data_dir)
    with closing(sqlite3.connect(store)) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
        db.commit()
    assert "schema version '99' is newer" in open_engine().describe("c").quarantine
