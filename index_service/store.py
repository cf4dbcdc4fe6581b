"""The source of truth: one SQLite database per collection, in WAL mode.

``synchronous=FULL``: every commit fsyncs the write-ahead log before returning, so a write we
acknowledge survives a process kill *and* an OS crash or power loss (NORMAL would survive
only the process kill). Each write transaction takes the next sequence number; every item
row carries the sequence of the write that made it and a fresh label (its FAISS id), so a
replaced item gets a new label and the old one is simply gone from the table.

One writer connection is used under the collection's write mutex; readers get their own
connections (WAL lets them read while a write is in progress).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsearch.errors import InternalError, ResourceExhaustedError
from index_service.config import CollectionConfig

SCHEMA_VERSION = "1"
_CHUNK = 500  # ids per "IN (...)" query, below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    label INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_shard ON items (shard, label);
"""


@dataclass(frozen=True)
class Change:
    """What one committed write did: rows removed (shard, label) and rows added."""

    sequence: int
    removed: list[tuple[int, int]]
    added_labels: np.ndarray  # label of each added row, increasing
    added_rows: list[int]  # index into the write's input of each added row
    count: int  # items deleted (for deletes)


@dataclass(frozen=True)
class ShardRows:
    labels: np.ndarray
    seqs: np.ndarray
    ids: list[str]
    metadata: list[str]


class Store:
    def __init__(self, path: Path, *, synchronous: str = "FULL"):
        self.path = path
        self.synchronous = synchronous
        self._writer = self._connect()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        meta = dict(self._writer.execute("SELECT key, value FROM meta").fetchall())
        self.config = CollectionConfig.from_json(meta["config"]) if "config" in meta else None
        self.uuid = meta.get("uuid", "")
        self.last_seq = int(meta.get("last_seq", 0))
        self.next_label = int(meta.get("next_label", 0))

    @classmethod
    def create(cls, path: Path, config: CollectionConfig) -> Store:
        store = cls(path)
        with store._transaction() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema", SCHEMA_VERSION),
                    ("config", config.to_json()),
                    ("uuid", uuid.uuid4().hex),
                    ("last_seq", "0"),
                    ("next_label", "0"),
                ],
            )
        return cls(path)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.executescript(_SCHEMA)
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    def close(self) -> None:
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        self._writer.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise ResourceExhaustedError(f"the index's disk is full: {exc}") from exc
            if isinstance(exc, sqlite3.Error):
                raise InternalError(f"storage error: {exc}") from exc
            raise

    # -- writes (caller holds the collection's write mutex) -----------------------------------

    def upsert(
        self, ids: Sequence[str], shards: Sequence[int], vectors: np.ndarray, metadata: Sequence[str]
    ) -> Change:
        """Writes the items that differ from what is stored; identical ones are left alone."""
        existing = {
            row[0]: row[1:]
            for chunk in _chunks(list(ids))
            for row in self._writer.execute(
                f"SELECT id, label, shard, vector, metadata FROM items WHERE id IN ({_marks(chunk)})", chunk
            )
        }
        changed: list[int] = []
        removed: list[tuple[int, int]] = []
        for i, item_id in enumerate(ids):
            old = existing.get(item_id)
            if old is not None and old[2] == vectors[i].tobytes() and old[3] == metadata[i]:
                continue
            changed.append(i)
            if old is not None:
                removed.append((old[1], old[0]))
        if not changed:
            return Change(self.last_seq, [], np.zeros(0, dtype=np.int64), [], 0)
        seq = self.last_seq + 1
        labels = np.arange(self.next_label, self.next_label + len(changed), dtype=np.int64)
        with self._transaction() as db:
            if removed:
                db.executemany("DELETE FROM items WHERE label = ?", [(label,) for _, label in removed])
            db.executemany(
                "INSERT INTO items (label, id, shard, seq, vector, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (int(label), ids[i], shards[i], seq, vectors[i].tobytes(), metadata[i])
                    for label, i in zip(labels, changed, strict=True)
                ],
            )
            self._set_counters(db, seq, self.next_label + len(changed))
        self.last_seq, self.next_label = seq, self.next_label + len(changed)
        return Change(seq, removed, labels, changed, len(changed))

    def delete(self, ids: Sequence[str]) -> Change:
        found = [
            (shard, label)
            for chunk in _chunks(list(dict.fromkeys(ids)))
            for label, shard in self._writer.execute(
                f"SELECT label, shard FROM items WHERE id IN ({_marks(chunk)})", chunk
            )
        ]
        if not found:
            return Change(self.last_seq, [], np.zeros(0, dtype=np.int64), [], 0)
        seq = self.last_seq + 1
        with self._transaction() as db:
            db.executemany("DELETE FROM items WHERE label = ?", [(label,) for _, label in found])
            self._set_counters(db, seq, self.next_label)
        self.last_seq = seq
        return Change(seq, found, np.zeros(0, dtype=np.int64), [], len(found))

    def _set_counters(self, db: sqlite3.Connection, seq: int, next_label: int) -> None:
        db.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(str(seq), "last_seq"), (str(next_label), "next_label")],
        )

    # -- reads ---------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> dict[str, tuple[bytes, str]]:
        """id -> (vector bytes, metadata JSON) for the ids that exist."""
        db = self._reader()
        return {
            row[0]: (row[1], row[2])
            for chunk in _chunks(list(dict.fromkeys(ids)))
            for row in db.execute(
                f"SELECT id, vector, metadata FROM items WHERE id IN ({_marks(chunk)})", chunk
            )
        }

    def vectors(self, labels: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels found, their vectors); labels deleted meanwhile are left out."""
        db = self._reader()
        found: list[int] = []
        blobs: list[bytes] = []
        for chunk in _chunks([int(x) for x in labels]):
            for label, blob in db.execute(
                f"SELECT label, vector FROM items WHERE label IN ({_marks(chunk)})", chunk
            ):
                found.append(label)
                blobs.append(blob)
        return _to_arrays(found, blobs, dimension)

    def shard_vectors(
        self, shard: int, dimension: int, above_label: int = -1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, vectors) of a shard's rows with a label above ``above_label``, label order."""
        db = self._reader()
        rows = db.execute(
            "SELECT label, vector FROM items WHERE shard = ? AND label > ? ORDER BY label",
            (shard, above_label),
        ).fetchall()
        return _to_arrays([r[0] for r in rows], [r[1] for r in rows], dimension)

    def shard_rows(self, shard: int) -> ShardRows:
        db = self._reader()
        rows = db.execute(
            "SELECT label, seq, id, metadata FROM items WHERE shard = ? ORDER BY label", (shard,)
        ).fetchall()
        return ShardRows(
            labels=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            seqs=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            ids=[r[2] for r in rows],
            metadata=[r[3] for r in rows],
        )


def _to_arrays(labels: list[int], blobs: list[bytes], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension).astype(np.float32)
    return np.asarray(labels, dtype=np.int64), vectors


def _chunks(values: list) -> Iterator[list]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))
