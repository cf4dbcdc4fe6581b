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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from clipsearch.errors import DataLossError, InternalError, ResourceExhaustedError, UnavailableError
from index_service import datadir
from index_service.config import CollectionConfig
from index_service.lexical import Allowed, LexicalFields, LexicalHit, LexicalIndex, SearchOptions, stored_rows

SCHEMA_VERSION = "4"  # 2: per-row checksums; 3: content_key; 4: grp (older files are upgraded on open)
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
    content_key TEXT NOT NULL DEFAULT '',
    grp TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS items_by_shard ON items (shard, label);
CREATE INDEX IF NOT EXISTS items_by_group ON items (grp) WHERE grp != '';
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
    label: int,
    item_id: str,
    shard: int,
    seq: int,
    metadata: str,
    vector_crc: int,
    content_key: str = "",
    group: str = "",
) -> int:
    """Over every column but the vector (which ``vector_crc`` covers); an empty content key or
    group adds nothing, so rows written before those columns existed keep their checksums."""
    crc = zlib.crc32(_ROW_KEY.pack(label, shard, seq, vector_crc))
    crc = zlib.crc32(item_id.encode(), crc)
    crc = zlib.crc32(b"\0" + metadata.encode(), crc)
    if content_key:
        crc = zlib.crc32(b"\1" + content_key.encode(), crc)
    return zlib.crc32(b"\2" + group.encode(), crc) if group else crc


@dataclass(frozen=True)
class Change:
    """What one committed write did: rows removed (shard, label) and rows added."""

    sequence: int
    removed: list[tuple[int, int]]
    added_labels: np.ndarray  # label of each added row, increasing
    added_rows: list[int]  # index into the write's input of each added row
    count: int  # items deleted (for deletes)
    #: Upserts: the rows it replaced, whole (label, id, shard, seq, vector, metadata, vector_crc,
    #: row_crc, content_key, grp), and the config before it; what :meth:`Store.undo` puts back.
    replaced: tuple[tuple, ...] = ()
    config_before: CollectionConfig | None = None
    #: Upserts: rows updated in place (vector unchanged), as (shard, label, input position).
    in_place: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class MetadataChange:
    """What a committed metadata update did: (shard, label, new metadata JSON) per changed row."""

    sequence: int
    changed: list[tuple[int, int, str]]


@dataclass(frozen=True)
class ShardRows:
    labels: np.ndarray
    seqs: np.ndarray
    ids: list[str]
    metadata: list[str]
    groups: list[str]


@dataclass(frozen=True)
class StoredRow:
    """One item as stored (its vector's bytes only when asked for)."""

    id: str
    metadata: str
    content_key: str
    group: str
    vector: bytes | None = None


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
        if meta.get("schema") in ("1", "2", "3"):
            self._upgrade_columns()
        elif meta.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise InternalError(
                f"{path}: schema version {meta['schema']!r} is newer than this server's "
                f"({SCHEMA_VERSION}); run the release that wrote it"
            )
        self.config = CollectionConfig.from_json(meta["config"]) if "config" in meta else None
        self.uuid = meta.get("uuid", "")
        self.last_seq = int(meta.get("last_seq", 0))
        self.next_label = int(meta.get("next_label", 0))
        #: BM25 over the schema's text and keyword fields, in this file (None: no such fields).
        self.lexical: LexicalIndex | None = None
        #: Settings and lexical index set inside the open write transaction, made the store's own
        #: when it commits and dropped when it rolls back (memory never runs ahead of the file).
        self._staged: tuple[CollectionConfig, LexicalIndex | None] | None = None
        if self.config is not None:
            self._open_lexical()

    def _open_lexical(self) -> None:
        """The lexical index of the schema's fields; rebuilt from the items when the file's
        tables are missing, of other fields, or behind the store (a crash mid-rebuild, or a
        file written by an older release)."""
        fields = LexicalFields.from_schema(self.config.schema if self.config is not None else None)
        if not fields.fields:
            return
        self.lexical = LexicalIndex(fields)
        if (
            LexicalIndex.installed(self._writer) == fields
            and LexicalIndex.sequence(self._writer) == self.last_seq
        ):
            return
        with self.transaction() as db:
            self._rebuild_lexical(db)

    def _rebuild_lexical(self, db: sqlite3.Connection) -> None:
        assert self.lexical is not None
        self.lexical.rebuild(db, stored_rows(db))
        LexicalIndex.set_sequence(db, self.last_seq)

    def _write_lexical(
        self,
        db: sqlite3.Connection,
        seq: int,
        *,
        removed: Iterable[int] = (),
        written: Sequence[tuple[int, str, str]] = (),
    ) -> None:
        """Inside a write transaction: the lexical rows of removed and (re)written items."""
        lexical = self._lexical_now()
        if lexical is None:
            return
        lexical.delete(db, removed)
        lexical.write(db, written)
        LexicalIndex.set_sequence(db, seq)

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

    def _upgrade_columns(self) -> None:
        """Adds the content key and group columns (empty: checksums of existing rows are unchanged)."""
        with self.transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
            if "content_key" not in columns:
                db.execute("ALTER TABLE items ADD COLUMN content_key TEXT NOT NULL DEFAULT ''")
            if "grp" not in columns:
                db.execute("ALTER TABLE items ADD COLUMN grp TEXT NOT NULL DEFAULT ''")
            db.execute("CREATE INDEX IF NOT EXISTS items_by_group ON items (grp) WHERE grp != ''")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))

    def set_config(self, db: sqlite3.Connection, config: CollectionConfig) -> None:
        """Inside a write transaction: the collection's settings (its schema grew). New text or
        keyword fields rebuild the lexical index in the same transaction. Both become this
        store's (``config``, ``lexical``) when the transaction commits."""
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config.to_json(),))
        current = self._lexical_now()
        fields = LexicalFields.from_schema(config.schema)
        lexical = current
        if fields != (current.fields if current is not None else LexicalFields(())):
            lexical = LexicalIndex(fields) if fields.fields else None
            if lexical is not None:
                lexical.rebuild(db, stored_rows(db))
                LexicalIndex.set_sequence(db, self.last_seq)
        self._staged = (config, lexical)

    def _lexical_now(self) -> LexicalIndex | None:
        """The lexical index the open transaction writes to (a staged one, else the store's)."""
        return self._staged[1] if self._staged is not None else self.lexical

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
        self._staged = None
        try:
            yield db
            db.execute("COMMIT")
            if self._staged is not None:
                self.config, self.lexical = self._staged
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
        finally:
            self._staged = None

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
        groups: Sequence[str] | None = None,
        *,
        config: CollectionConfig | None = None,
    ) -> Change:
        """Writes the items that differ from what is stored; identical ones are left alone.

        An item whose vector (and shard) is unchanged is updated in place, keeping its label:
        its metadata, content key and group change and the index is not touched (a price
        change costs no vector work). ``config``, when given, is stored in the same
        transaction (the write set the schema).
        """
        groups = groups if groups is not None else [""] * len(ids)
        existing = {
            row[0]: row[1:]
            for chunk in _chunks(list(ids))
            for row in self._writer.execute(
                "SELECT id, label, shard, vector, metadata, content_key, grp, seq, vector_crc, row_crc"
                " FROM items"
                f" WHERE id IN ({_marks(chunk)})",
                chunk,
            )
        }
        changed: list[int] = []
        removed: list[tuple[int, int]] = []
        replaced: list[tuple] = []
        in_place: list[tuple[int, int]] = []  # (input position, label)
        for i, item_id in enumerate(ids):
            old = existing.get(item_id)
            blob = vectors[i].tobytes()
            if old is not None and old[2:6] == (blob, metadata[i], content_keys[i], groups[i]):
                continue
            if old is not None:
                # (label, id, shard, seq, vector, metadata, vector_crc, row_crc, content_key, grp)
                replaced.append(
                    (old[0], item_id, old[1], old[6], old[2], old[3], old[7], old[8], old[4], old[5])
                )
                if old[2] == blob and old[1] == shards[i]:
                    in_place.append((i, old[0]))
                    continue
                removed.append((old[1], old[0]))
            changed.append(i)
        if not changed and not in_place and config is None:
            return Change(self.last_seq, [], np.zeros(0, dtype=np.int64), [], 0)
        seq = self.last_seq + 1
        labels = np.arange(self.next_label, self.next_label + len(changed), dtype=np.int64)
        config_before = self.config if config is not None else None
        with self.transaction() as db:
            if config is not None:
                self.set_config(db, config)
            if removed:
                db.executemany("DELETE FROM items WHERE label = ?", [(label,) for _, label in removed])
            rows = []
            for label, i in zip(labels, changed, strict=True):
                blob = vectors[i].tobytes()
                key, group = content_keys[i], groups[i]
                checks = _checksums(int(label), ids[i], shards[i], seq, blob, metadata[i], key, group)
                rows.append((int(label), ids[i], shards[i], seq, blob, metadata[i], *checks, key, group))
            db.executemany(
                "INSERT INTO items (label, id, shard, seq, vector, metadata, vector_crc, row_crc,"
                " content_key, grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            updates = []
            for i, kept_label in in_place:
                key, group, blob = content_keys[i], groups[i], vectors[i].tobytes()
                _, crc = _checksums(kept_label, ids[i], shards[i], seq, blob, metadata[i], key, group)
                updates.append((metadata[i], key, group, seq, crc, kept_label))
            db.executemany(
                "UPDATE items SET metadata = ?, content_key = ?, grp = ?, seq = ?, row_crc = ?"
                " WHERE label = ?",
                updates,
            )
            self._set_counters(db, seq, self.next_label + len(changed))
            self._write_lexical(
                db,
                seq,
                removed=[label for _, label in removed],
                written=[(row[0], row[1], row[5]) for row in rows]
                + [(label, ids[i], metadata[i]) for i, label in in_place],
            )
        self.last_seq, self.next_label = seq, self.next_label + len(changed)
        return Change(
            seq,
            removed,
            labels,
            changed,
            len(changed) + len(in_place),
            tuple(replaced),
            config_before,
            tuple((shards[i], label, i) for i, label in in_place),
        )

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
                "DELETE FROM items WHERE label = ?",
                [(int(label),) for label in change.added_labels]
                + [(label,) for _, label, _ in change.in_place],
            )
            db.executemany(
                "INSERT INTO items (label, id, shard, seq, vector, metadata, vector_crc, row_crc,"
                " content_key, grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                change.replaced,
            )
            self._set_counters(db, seq, self.next_label)
            self._write_lexical(
                db,
                seq,
                removed=[int(label) for label in change.added_labels],
                written=[(row[0], row[1], row[5]) for row in change.replaced],
            )
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
            self._write_lexical(db, seq, removed=[label for _, label in found])
        self.last_seq = seq
        return Change(seq, found, np.zeros(0, dtype=np.int64), [], len(found))

    def update_metadata(self, metadata_by_id: Mapping[str, str]) -> MetadataChange:
        """New metadata (encoded JSON) for existing ids, in place: labels, vectors and groups stay.

        Ids that do not exist are skipped, and so are rows that already hold that metadata.
        """
        ids = list(metadata_by_id)
        rows = [
            row
            for chunk in _chunks(ids)
            for row in self._writer.execute(
                "SELECT label, id, shard, metadata, vector_crc, content_key, grp FROM items"
                f" WHERE id IN ({_marks(chunk)})",
                chunk,
            )
            if row[3] != metadata_by_id[row[1]]
        ]
        if not rows:
            return MetadataChange(self.last_seq, [])
        seq = self.last_seq + 1
        updates = []
        changed = []
        written = []
        for label, item_id, shard, _, vector_crc, key, group in rows:
            text = metadata_by_id[item_id]
            crc = row_checksum(label, item_id, shard, seq, text, vector_crc, key, group)
            updates.append((text, seq, crc, label))
            changed.append((shard, label, text))
            written.append((label, item_id, text))
        with self.transaction() as db:
            db.executemany("UPDATE items SET metadata = ?, seq = ?, row_crc = ? WHERE label = ?", updates)
            self._set_counters(db, seq, self.next_label)
            self._write_lexical(db, seq, written=written)
        self.last_seq = seq
        return MetadataChange(seq, changed)

    def _set_counters(self, db: sqlite3.Connection, seq: int, next_label: int) -> None:
        db.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(str(seq), "last_seq"), (str(next_label), "next_label")],
        )

    # -- reads ---------------------------------------------------------------------------------

    @_reading
    def get(self, ids: Sequence[str]) -> dict[str, StoredRow]:
        """The rows of the ids that exist, with their vectors; DATA_LOSS if one fails its checksum."""
        db = self._reader()
        found = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            for row in db.execute(f"{_ROW_COLUMNS} WHERE id IN ({_marks(chunk)})", chunk):
                stored = self._checked(row)
                found[stored.id] = stored
        return found

    @_reading
    def scroll(self, after: str, limit: int) -> list[StoredRow]:
        """Up to ``limit`` rows with an id above ``after``, in id order, with their vectors."""
        rows = self._reader().execute(f"{_ROW_COLUMNS} WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [self._checked(row) for row in rows]

    @_reading
    def lexical_search(
        self, text: str, k: int, allowed: Allowed | None, options: SearchOptions
    ) -> list[LexicalHit]:
        """The keyword side of a search (index_service/lexical.py), on a committed snapshot."""
        if self.lexical is None:
            return []
        return self.lexical.search(self._reader(), text, k, allowed=allowed, options=options)

    @_reading
    def lexical_scores(self, text: str, labels: Sequence[int], options: SearchOptions) -> list[LexicalHit]:
        """BM25 and matched words of given items for ``text`` (the vector side's candidates)."""
        if self.lexical is None or not labels:
            return []
        return self.lexical.score_items(self._reader(), text, labels, options)

    @_reading
    def labels_of(self, ids: Sequence[str]) -> dict[str, int]:
        db = self._reader()
        return {
            item_id: label
            for chunk in _chunks(list(dict.fromkeys(ids)))
            for item_id, label in db.execute(
                f"SELECT id, label FROM items WHERE id IN ({_marks(chunk)})", chunk
            )
        }

    @_reading
    def existing(self, ids: Sequence[str]) -> list[str]:
        """The ids that exist, in the order given, each once."""
        db = self._reader()
        found = {
            item_id
            for chunk in _chunks(list(dict.fromkeys(ids)))
            for (item_id,) in db.execute(f"SELECT id FROM items WHERE id IN ({_marks(chunk)})", chunk)
        }
        return [item_id for item_id in dict.fromkeys(ids) if item_id in found]

    @_reading
    def metadata_of(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> metadata JSON of the ids that exist (no vectors read)."""
        db = self._reader()
        return {
            item_id: text
            for chunk in _chunks(list(dict.fromkeys(ids)))
            for item_id, text in db.execute(
                f"SELECT id, metadata FROM items WHERE id IN ({_marks(chunk)})", chunk
            )
        }

    @_reading
    def ids_of_groups(self, groups: Sequence[str]) -> list[str]:
        db = self._reader()
        return [
            item_id
            for chunk in _chunks(list(dict.fromkeys(g for g in groups if g)))
            for (item_id,) in db.execute(f"SELECT id FROM items WHERE grp IN ({_marks(chunk)})", chunk)
        ]

    def _checked(self, row: tuple) -> StoredRow:
        label, item_id, shard, seq, blob, meta, vector_crc, row_crc, key, group = row
        if _checksums(label, item_id, shard, seq, blob, meta, key, group) != (vector_crc, row_crc):
            raise self._corrupt(label, item_id)
        return StoredRow(item_id, meta, key, group, blob)

    def backup_to(self, path: Path) -> tuple[int, int]:
        """A consistent copy of the database at ``path`` (SQLite's online backup, one read
        transaction: the writes committed when it starts, none after): (items, sequence)."""
        target = sqlite3.connect(path)
        try:
            source = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
            try:
                source.backup(target)
            finally:
                source.close()
            (sequence,) = target.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            (items,) = target.execute("SELECT COUNT(*) FROM items").fetchone()
            return int(items), int(sequence)
        finally:
            target.close()

    def verify(self) -> int:
        """Reads every row and checks both its checksums (DATA_LOSS naming the first bad one);
        returns the number of items."""
        count = 0
        for row in self._writer.execute(_ROW_COLUMNS):
            self._checked(row)
            count += 1
        return count

    def rename(self, name: str) -> None:
        """The collection's name in its stored config (a restore under another name)."""
        assert self.config is not None
        config = replace(self.config, name=name)
        with self.transaction() as db:
            self.set_config(db, config)

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
            "SELECT label, seq, id, metadata, vector_crc, row_crc, content_key, grp FROM items"
            " WHERE shard = ? ORDER BY label",
            (shard,),
        ).fetchall()
        for label, seq, item_id, meta, vector_crc, row_crc, key, group in rows:
            if row_checksum(label, item_id, shard, seq, meta, vector_crc, key, group) != row_crc:
                raise self._corrupt(label, item_id)
        return ShardRows(
            labels=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            seqs=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            ids=[r[2] for r in rows],
            metadata=[r[3] for r in rows],
            groups=[r[7] for r in rows],
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


_ROW_COLUMNS = (
    "SELECT label, id, shard, seq, vector, metadata, vector_crc, row_crc, content_key, grp FROM items"
)


def _checksums(
    label: int,
    item_id: str,
    shard: int,
    seq: int,
    blob: bytes,
    metadata: str,
    content_key: str = "",
    group: str = "",
) -> tuple[int, int]:
    vector_crc = vector_checksum(blob)
    return vector_crc, row_checksum(label, item_id, shard, seq, metadata, vector_crc, content_key, group)


def _to_arrays(labels: list[int], blobs: list[bytes], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension).astype(np.float32)
    return np.asarray(labels, dtype=np.int64), vectors


def _chunks(values: list) -> Iterator[list]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))
