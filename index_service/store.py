"""The source of truth: one SQLite database per collection, in WAL mode.

``synchronous=FULL``: every commit fsyncs the write-ahead log before returning, so a write we
acknowledge survives a process kill *and* an OS crash or power loss (NORMAL would survive
only the process kill). Each write transaction takes the next sequence number; every item
row carries the sequence of the write that made it and a fresh label (its FAISS id), so a
replaced item gets a new label and the old one is simply gone from the table.

Every row carries two CRC-32 checksums, so silent media corruption of a stored value is
refused (DATA_LOSS) instead of served: ``vector_crc`` over the vector bytes and ``row_crc``
over label, id, shard, seq, metadata and ``vector_crc``. They are split so the start-up
path, which reads every row but no vector when a snapshot holds them, still verifies each
row without reading 2 KB per item; every read that returns a vector verifies it too.

One writer connection is used under the collection's write mutex; readers get their own
connections (WAL lets them read while a write is in progress).
"""

from __future__ import annotations

import functools
import sqlite3
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from clipsearch.errors import DataLossError, InternalError, ResourceExhaustedError, UnavailableError
from index_service import datadir
from index_service.config import CollectionConfig

SCHEMA_VERSION = "3"  # 2: per-row checksums; 3: content_key (older files are upgraded on open)
PAGE_SIZE = 16384
_CHUNK = 500  # ids per "IN (...)" query, below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    label INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL,
    vector_crc INTEGER NOT NULL,
    row_crc INTEGER NOT NULL,
    content_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS items_by_shard ON items (shard, label);
"""
F = TypeVar("F", bound=Callable[..., Any])


def _reading(method: F) -> F:
    """A read that finds the file damaged raises DATA_LOSS (not INTERNAL), naming the file."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if type(exc) is sqlite3.DatabaseError or "malformed" in text or "decode" in text:
                raise DataLossError(f"{self.path}: the file is corrupt on disk ({text})") from exc
            raise InternalError(f"storage error: {exc}") from exc

    return wrapper  # type: ignore[return-value]


_ROW_KEY = struct.Struct("<qqqI")  # label, shard, seq, vector_crc


def vector_checksum(vector: bytes) -> int:
    return zlib.crc32(vector)


def row_checksum(
    label: int, item_id: str, shard: int, seq: int, metadata: str, vector_crc: int, content_key: str = ""
) -> int:
    """Over every column but the vector (which ``vector_crc`` covers); an empty content key adds
    nothing, so rows written before it existed keep their checksums."""
    crc = zlib.crc32(_ROW_KEY.pack(label, shard, seq, vector_crc))
    crc = zlib.crc32(item_id.encode(), crc)
    crc = zlib.crc32(b"\0" + metadata.encode(), crc)
    return zlib.crc32(b"\1" + content_key.encode(), crc) if content_key else crc


@dataclass(frozen=True)
class Change:
    """What one committed write did: rows removed (shard, label) and rows added."""

    sequence: int
    removed: list[tuple[int, int]]
    added_labels: np.ndarray  # label of each added row, increasing
    added_rows: list[int]  # index into the write's input of each added row
    count: int  # items deleted (for deletes)
    #: Upserts: the rows it replaced, whole (label, id, shard, seq, vector, metadata, vector_crc,
    #: row_crc, content_key), and the config before it; what :meth:`Store.undo` puts back.
    replaced: tuple[tuple, ...] = ()
    config_before: CollectionConfig | None = None


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
        #: The file this store opened: a commit is acknowledged only while it is still on disk.
        self._identity = datadir.identity(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        meta = dict(self._writer.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") == "1":
            self._upgrade_from_1()
        if meta.get("schema") in ("1", "2"):
            self._upgrade_from_2()
        elif meta.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise InternalError(
                f"{path}: schema version {meta['schema']!r} is newer than this server's "
                f"({SCHEMA_VERSION}); run the release that wrote it"
            )
        self.config = CollectionConfig.from_json(meta["config"]) if "config" in meta else None
        self.uuid = meta.get("uuid", "")
        self.last_seq = int(meta.get("last_seq", 0))
        self.next_label = int(meta.get("next_label", 0))

    @classmethod
    def create(cls, path: Path, config: CollectionConfig) -> Store:
        store = cls(path)
        with store.transaction() as db:
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
        # 16 KiB pages: a 512-d row (2.1 KB) fits 7 to a page; with SQLite's 4 KiB default only
        # one fits and half of every page is empty. Ignored by an existing database.
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone() is None:
            db.executescript(_SCHEMA)
        return db

    def _upgrade_from_1(self) -> None:
        """Adds the checksum columns to a version-1 database, in one transaction."""
        with self.transaction() as db:
            db.execute("ALTER TABLE items ADD COLUMN vector_crc INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE items ADD COLUMN row_crc INTEGER NOT NULL DEFAULT 0")
            rows = db.execute("SELECT label, id, shard, seq, vector, metadata FROM items").fetchall()
            db.executemany(
                "UPDATE items SET vector_crc = ?, row_crc = ? WHERE label = ?",
                [(*_checksums(*row), row[0]) for row in rows],
            )
            db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")

    def _upgrade_from_2(self) -> None:
        """Adds the content key column (empty: checksums of existing rows are unchanged)."""
        with self.transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
            if "content_key" not in columns:
                db.execute("ALTER TABLE items ADD COLUMN content_key TEXT NOT NULL DEFAULT ''")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))

    def set_config(self, db: sqlite3.Connection, config: CollectionConfig) -> None:
        """Inside a write transaction: the collection's settings (its schema grew)."""
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config.to_json(),))

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
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
            lost = self.file_problem()
            if lost is not None:  # SQLite wrote into a file that is no longer on disk
                raise UnavailableError(
                    f"the index's data was removed or replaced while serving ({lost}): this write is "
                    "not durable and not acknowledged; the index refuses writes until it is restarted",
                    retry_after_s=5.0,
                )
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise ResourceExhaustedError(f"the index's disk is full: {exc}") from exc
            if isinstance(exc, sqlite3.Error):
                raise InternalError(f"storage error: {exc}") from exc
            raise

    def file_problem(self) -> str | None:
        """Whether the store file was removed or replaced since it was opened (None: it is intact)."""
        return datadir.problem_with(self.path, self._identity)

    # -- writes (caller holds the collection's write mutex) -----------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        shards: Sequence[int],
        vectors: np.ndarray,
        metadata: Sequence[str],
        content_keys: Sequence[str],
        *,
        config: CollectionConfig | None = None,
    ) -> Change:
        """Writes the items that differ from what is stored; identical ones are left alone.

        ``config``, when given, is stored in the same transaction (the write set the schema).
        """
        existing = {
            row[0]: row[1:]
            for chunk in _chunks(list(ids))
            for row in self._writer.execute(
                "SELECT id, label, shard, vector, metadata, content_key, seq, vector_crc, row_crc FROM items"
                f" WHERE id IN ({_marks(chunk)})",
                chunk,
            )
        }
        changed: list[int] = []
        removed: list[tuple[int, int]] = []
        replaced: list[tuple] = []
        for i, item_id in enumerate(ids):
            old = existing.get(item_id)
            if old is not None and old[2:5] == (vectors[i].tobytes(), metadata[i], content_keys[i]):
                continue
            changed.append(i)
            if old is not None:
                removed.append((old[1], old[0]))
                replaced.append((old[0], item_id, old[1], old[5], old[2], old[3], old[6], old[7], old[4]))
        if not changed and config is None:
            return Change(self.last_seq, [], np.zeros(0, dtype=np.int64), [], 0)
        seq = self.last_seq + 1
        labels = np.arange(self.next_label, self.next_label + len(changed), dtype=np.int64)
        with self.transaction() as db:
            if config is not None:
                self.set_config(db, config)
            if removed:
                db.executemany("DELETE FROM items WHERE label = ?", [(label,) for _, label in removed])
            rows = []
            for label, i in zip(labels, changed, strict=True):
                blob = vectors[i].tobytes()
                checks = _checksums(int(label), ids[i], shards[i], seq, blob, metadata[i], content_keys[i])
                rows.append((int(label), ids[i], shards[i], seq, blob, metadata[i], *checks, content_keys[i]))
            db.executemany(
                "INSERT INTO items (label, id, shard, seq, vector, metadata, vector_crc, row_crc,"
                " content_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._set_counters(db, seq, self.next_label + len(changed))
        config_before = self.config if config is not None else None
        if config is not None:
            self.config = config
        self.last_seq, self.next_label = seq, self.next_label + len(changed)
        return Change(seq, removed, labels, changed, len(changed), tuple(replaced), config_before)

    def undo(self, change: Change) -> None:
        """Reverts a committed upsert that could not be applied in memory, as a new write.

        Its rows are deleted and the rows it replaced come back exactly (their labels,
        sequences and checksums), so the store holds what it held before: a write that
        can never be applied does not stay in the store to fail every start. Labels are
        never reused (``next_label`` stays where the write left it).
        """
        seq = self.last_seq + 1
        with self.transaction() as db:
            if change.config_before is not None:
                self.set_config(db, change.config_before)
            db.executemany(
                "DELETE FROM items WHERE label = ?", [(int(label),) for label in change.added_labels]
            )
            db.executemany(
                "INSERT INTO items (label, id, shard, seq, vector, metadata, vector_crc, row_crc,"
                " content_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                change.replaced,
            )
            self._set_counters(db, seq, self.next_label)
        if change.config_before is not None:
            self.config = change.config_before
        self.last_seq = seq

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
        with self.transaction() as db:
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

    @_reading
    def get(self, ids: Sequence[str]) -> dict[str, tuple[bytes, str, str]]:
        """id -> (vector bytes, metadata JSON, content key) of the ids that exist; DATA_LOSS if corrupt."""
        db = self._reader()
        found = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            for label, item_id, shard, seq, blob, meta, vector_crc, row_crc, key in db.execute(
                "SELECT label, id, shard, seq, vector, metadata, vector_crc, row_crc, content_key"
                f" FROM items WHERE id IN ({_marks(chunk)})",
                chunk,
            ):
                if _checksums(label, item_id, shard, seq, blob, meta, key) != (vector_crc, row_crc):
                    raise self._corrupt(label, item_id)
                found[item_id] = (blob, meta, key)
        return found

    @_reading
    def vectors(self, labels: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels found, their vectors); labels deleted meanwhile are left out."""
        db = self._reader()
        found: list[int] = []
        blobs: list[bytes] = []
        for chunk in _chunks([int(x) for x in labels]):
            for label, blob, vector_crc in db.execute(
                f"SELECT label, vector, vector_crc FROM items WHERE label IN ({_marks(chunk)})", chunk
            ):
                if vector_checksum(blob) != vector_crc:
                    raise self._corrupt(label)
                found.append(label)
                blobs.append(blob)
        return _to_arrays(found, blobs, dimension)

    @_reading
    def shard_vectors(
        self, shard: int, dimension: int, above_label: int = -1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, vectors) of a shard's rows with a label above ``above_label``, label order."""
        db = self._reader()
        rows = db.execute(
            "SELECT label, vector, vector_crc FROM items WHERE shard = ? AND label > ? ORDER BY label",
            (shard, above_label),
        ).fetchall()
        for label, blob, vector_crc in rows:
            if vector_checksum(blob) != vector_crc:
                raise self._corrupt(label)
        return _to_arrays([r[0] for r in rows], [r[1] for r in rows], dimension)

    @_reading
    def shard_rows(self, shard: int) -> ShardRows:
        """A shard's rows without vectors, each verified against its ``row_crc``."""
        db = self._reader()
        rows = db.execute(
            "SELECT label, seq, id, metadata, vector_crc, row_crc, content_key FROM items"
            " WHERE shard = ? ORDER BY label",
            (shard,),
        ).fetchall()
        for label, seq, item_id, meta, vector_crc, row_crc, key in rows:
            if row_checksum(label, item_id, shard, seq, meta, vector_crc, key) != row_crc:
                raise self._corrupt(label, item_id)
        return ShardRows(
            labels=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            seqs=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            ids=[r[2] for r in rows],
            metadata=[r[3] for r in rows],
        )

    @_reading
    def check_id_index(self, shards: Sequence[ShardRows]) -> None:
        """DATA_LOSS unless the id index maps exactly the ids the shard scans found to their labels.

        The shard scans read through ``items_by_shard``; lookups by id go through the UNIQUE
        index on ``id``. A corrupt entry in either would hide an item (from its shard, or from
        Get/upsert by id) without any row failing its checksum, so the two are compared once
        at open: a pass over the small id index, not over the vectors.
        """
        db = self._reader()
        (name,) = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'"
            " AND name LIKE 'sqlite_autoindex_items_%'"
        ).fetchone()
        by_id = dict(db.execute(f"SELECT id, label FROM items INDEXED BY {name}"))
        scanned: dict[str, int] = {}
        for rows in shards:
            scanned.update(zip(rows.ids, rows.labels.tolist(), strict=True))
        if by_id != scanned or len(scanned) != sum(len(rows.ids) for rows in shards):
            differ = sorted(set(by_id.items()) ^ set(scanned.items()))[:3]
            raise DataLossError(
                f"{self.path}: the id index and the shard index disagree (first differences: {differ}): "
                "the file is corrupt on disk; restore the collection from a backup or re-ingest it"
            )

    def _corrupt(self, label: int, item_id: str | None = None) -> DataLossError:
        which = f"label {label}" + (f" (id {item_id!r})" if item_id is not None else "")
        return DataLossError(
            f"{self.path}: the row of {which} fails its checksum: the file is corrupt on disk; "
            "restore the collection from a backup or re-ingest it"
        )


def _checksums(
    label: int, item_id: str, shard: int, seq: int, blob: bytes, metadata: str, content_key: str = ""
) -> tuple[int, int]:
    vector_crc = vector_checksum(blob)
    return vector_crc, row_checksum(label, item_id, shard, seq, metadata, vector_crc, content_key)


def _to_arrays(labels: list[int], blobs: list[bytes], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension).astype(np.float32)
    return np.asarray(labels, dtype=np.int64), vectors


def _chunks(values: list) -> Iterator[list]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))
