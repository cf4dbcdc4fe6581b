"""A collection: its store, its shards, and the write, read and search paths.

Writes are serialized by one mutex per collection: commit to SQLite first (durable), then
apply to the in-memory shards. A crash between the two is repaired at the next start by
replaying the store over the newest snapshot, so the store alone decides what exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import faiss
import numpy as np

from clipsearch.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from index_service import snapshots, topk
from index_service.config import (
    MAX_ID_BYTES,
    CollectionConfig,
    CollectionInfo,
    Hit,
    MetadataValue,
    Metric,
    SearchParams,
    ShardStats,
    StoredItem,
    WriteResult,
)
from index_service.filters import Filter
from index_service.kinds import IndexKind, index_labels
from index_service.rows import RowTable, encode_metadata
from index_service.shard import Candidate, Shard
from index_service.store import ShardRows, Store

log = logging.getLogger(__name__)

MAX_K = 10_000
MAX_OFFSET = 10_000
MAX_QUERIES = 1024
STORE_FILE = "store.sqlite"


@dataclass(frozen=True)
class CollectionOptions:
    snapshot_min_ops: int = 50_000
    #: ...and at least this fraction of the shard's items, so the bytes snapshotted while a
    #: shard grows stay proportional to its size (a fixed count rewrites it O(n^2) times).
    snapshot_growth: float = 0.5
    snapshot_interval_s: float = 60.0
    rebuild_dead_ratio: float = 0.2
    exact_fallback_max: int = 20_000


def shard_of(item_id: str, num_shards: int) -> int:
    """Stable across processes and machines (unlike ``hash``)."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_shards


class Collection:
    def __init__(
        self, path: Path, store: Store, shards: list[Shard], pool: Executor, options: CollectionOptions
    ):
        assert store.config is not None
        self.path = path
        self.config: CollectionConfig = store.config
        self.kind = IndexKind.describe(self.config.index_spec, self.config.dimension, self.config.metric)
        self.store = store
        self.shards = shards
        self.options = options
        self._pool = pool
        self._write_mutex = threading.Lock()
        self._maintenance_mutex = threading.Lock()
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, pool: Executor, options: CollectionOptions) -> Collection:
        """Loads the newest valid snapshot of every shard and replays the store over it."""
        store = Store(path / STORE_FILE)
        if store.config is None:
            store.close()
            raise RuntimeError(f"{path}: not a collection (no config in {STORE_FILE})")
        config = store.config
        kind = IndexKind.describe(config.index_spec, config.dimension, config.metric)
        try:
            rows = [store.shard_rows(number) for number in range(config.num_shards)]
            store.check_id_index(rows)
        except BaseException:
            store.close()
            raise
        shards = [_load_shard(path, store, kind, number, rows[number]) for number in range(config.num_shards)]
        for shard in shards:
            shard.applied_seq = store.last_seq
        return cls(path, store, shards, pool, options)

    def close(self, *, snapshot: bool) -> None:
        with self._maintenance_mutex, self._write_mutex:
            if self.closed:
                return
            self.closed = True
            if snapshot:
                for shard in self.shards:
                    if shard.dirty:
                        self._snapshot(shard)
            for shard in self.shards:
                with shard.lock.write():
                    pass  # waits for searches in flight
            self.store.close()

    def info(self) -> CollectionInfo:
        stats = tuple(ShardStats(s.number, s.rows.live, s.trained) for s in self.shards)
        return CollectionInfo(self.config, sum(s.item_count for s in stats), stats)

    def _check_open(self) -> None:
        if self.closed:
            raise NotFoundError(f"collection {self.config.name!r} was dropped", field="collection")

    def _check_fingerprint(self, fingerprint: str) -> None:
        mine = self.config.model_fingerprint
        if mine and fingerprint and fingerprint != mine:
            raise FailedPreconditionError(
                f"collection {self.config.name!r} holds vectors of model {mine!r}, "
                f"not {fingerprint!r}: re-encode with that model or use another collection",
                field="model_fingerprint",
            )

    # -- writes ------------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[np.ndarray] | np.ndarray,
        metadata: Sequence[Mapping[str, MetadataValue]] | None = None,
        *,
        model_fingerprint: str = "",
    ) -> WriteResult:
        """Inserts or replaces items; returns once the write is durable. The last of repeated ids wins."""
        self._check_open()
        self._check_fingerprint(model_fingerprint)
        if len(vectors) != len(ids) or (metadata is not None and len(metadata) != len(ids)):
            raise InvalidArgumentError("ids, vectors and metadata must have the same length", field="items")
        for i, item_id in enumerate(ids):
            check_id(item_id, f"items[{i}].id")
        matrix = self._matrix(vectors, "items[{}].vector")
        encoded = [
            _encode_metadata(m, f"items[{i}].metadata") for i, m in enumerate(metadata or [{}] * len(ids))
        ]
        last = {item_id: i for i, item_id in enumerate(ids)}
        order = sorted(last.values())
        ids = [ids[i] for i in order]
        matrix = matrix[order]
        encoded = [encoded[i] for i in order]
        shards = [shard_of(item_id, len(self.shards)) for item_id in ids]
        with self._write_mutex:
            self._check_open()
            change = self.store.upsert(ids, shards, matrix, encoded)
            rows = np.asarray(change.added_rows, dtype=np.int64)
            added_shards = np.asarray([shards[i] for i in change.added_rows], dtype=np.int64)
            self._apply(
                change.sequence, change.removed, added_shards, change.added_labels, rows, matrix, ids, encoded
            )
        return WriteResult(len(ids), change.sequence)

    def delete(self, ids: Sequence[str]) -> WriteResult:
        """Deletes the ids that exist; returns how many did."""
        self._check_open()
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        with self._write_mutex:
            self._check_open()
            change = self.store.delete(ids)
            empty = np.zeros(0, dtype=np.int64)
            self._apply(change.sequence, change.removed, empty, empty, empty, None, [], [])
        return WriteResult(change.count, change.sequence)

    def _apply(
        self,
        sequence: int,
        removed: list[tuple[int, int]],
        added_shards: np.ndarray,
        labels: np.ndarray,
        rows: np.ndarray,
        matrix: np.ndarray | None,
        ids: list[str],
        metadata: list[str],
    ) -> None:
        removed_by_shard: dict[int, list[int]] = {}
        for shard_number, label in removed:
            removed_by_shard.setdefault(shard_number, []).append(label)
        for shard in self.shards:
            gone = np.asarray(sorted(removed_by_shard.get(shard.number, [])), dtype=np.int64)
            mine = np.flatnonzero(added_shards == shard.number)
            if len(gone) == 0 and len(mine) == 0:
                shard.applied_seq = sequence
                continue
            picked = rows[mine]
            shard.apply(
                sequence,
                gone,
                labels[mine],
                matrix[picked] if matrix is not None else np.zeros((0, self.config.dimension), np.float32),
                [ids[i] for i in picked],
                [metadata[i] for i in picked],
            )

    # -- reads -------------------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, include_vectors: bool = False, missing_ok: bool = False
    ) -> list[StoredItem]:
        """Items in the order asked; NOT_FOUND naming the ids that do not exist, unless ``missing_ok``."""
        self._check_open()
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        found = self.store.get(ids)
        if not missing_ok:
            check_found(self.config.name, ids, found)
        items = []
        for item_id in ids:
            if item_id not in found:
                continue
            blob, meta = found[item_id]
            vector = np.frombuffer(blob, dtype="<f4").astype(np.float32) if include_vectors else None
            items.append(StoredItem(item_id, json.loads(meta), vector))
        return items

    def search(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        k: int,
        *,
        offset: int = 0,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
    ) -> list[list[Hit]]:
        """The best ``k`` hits after ``offset`` for every query (:mod:`~index_service.topk` order)."""
        params = params or SearchParams()
        check_search(k, offset, len(queries), params)
        parts = self.candidates(
            queries, k + offset, filter_=filter_, params=params, model_fingerprint=model_fingerprint
        )
        return [top_hits(row, k, offset=offset) for row in parts]

    def candidates(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        width: int,
        *,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
    ) -> list[list[Candidate]]:
        """Every shard's best ``width`` candidates per query, unmerged (the cluster merges across groups).

        The request was checked by :func:`check_search` where it entered (here, or before a
        cluster fans it out): ``width`` is ``k + offset``.
        """
        self._check_open()
        self._check_fingerprint(model_fingerprint)
        if not 1 <= width <= MAX_K + MAX_OFFSET:
            raise InvalidArgumentError(
                f"k + offset must be in [1, {MAX_K + MAX_OFFSET}], got {width}", field="k"
            )
        params = params or SearchParams()
        matrix = self._matrix(queries, "queries[{}]")
        read = self._vector_reader
        fallback = self.options.exact_fallback_max

        def search_shard(shard: Shard) -> list[list[Candidate]]:
            return shard.search(matrix, width, filter_, params, read, fallback)

        if len(self.shards) == 1:
            return search_shard(self.shards[0])
        parts = list(self._pool.map(search_shard, self.shards))
        return [[c for part in parts for c in part[q]] for q in range(len(matrix))]

    def _vector_reader(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.vectors(labels, self.config.dimension)

    def _matrix(self, vectors: Sequence[np.ndarray] | np.ndarray, field: str) -> np.ndarray:
        """Checks dimension and finiteness (errors name the row), normalizes for cosine."""
        dim = self.config.dimension
        if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.shape[1] == dim:
            matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        else:
            for i, row in enumerate(vectors):
                if np.ndim(row) != 1 or len(row) != dim:
                    raise InvalidArgumentError(
                        f"{field.format(i)}: expected dimension {dim}, got {np.shape(row)}",
                        field=field.format(i),
                    )
            matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise InvalidArgumentError(f"{field.format(bad)}: contains NaN or Inf", field=field.format(bad))
        if self.config.metric == Metric.COSINE:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            if (norms == 0).any():
                bad = int(np.argmin(norms[:, 0]))
                raise InvalidArgumentError(
                    f"{field.format(bad)}: a zero vector has no cosine similarity", field=field.format(bad)
                )
            matrix = matrix / norms
        return np.ascontiguousarray(matrix, dtype=np.float32)

    # -- maintenance (the engine's background thread) ----------------------------------------

    def maintain(self) -> bool:
        """Does at most one due job (a rebuild or training, else a snapshot); False if none was due."""
        with self._maintenance_mutex:
            if self.closed:
                return False
            for shard in self.shards:
                if shard.needs_rebuild(self.options.rebuild_dead_ratio):
                    self._rebuild(shard)
                    return True
            now = time.monotonic()
            for shard in self.shards:
                enough = max(self.options.snapshot_min_ops, self.options.snapshot_growth * shard.rows.live)
                due = shard.dirty >= enough or (
                    shard.dirty and now - shard.snapshot_time >= self.options.snapshot_interval_s
                )
                if due:
                    self._snapshot(shard)
                    return True
            return False

    def snapshot_all(self) -> None:
        """Snapshots every shard with unsnapshotted writes (tests, shutdown)."""
        with self._maintenance_mutex:
            for shard in self.shards:
                if shard.dirty and not self.closed:
                    self._snapshot(shard)

    def _snapshot(self, shard: Shard) -> None:
        with shard.lock.read():
            payload = faiss.serialize_index(shard.index)
            sequence, trained, dirty = shard.applied_seq, shard.trained, shard.dirty
        started = time.monotonic()
        snapshots.write(_shard_dir(self.path, shard.number), sequence, payload, trained, self.store.uuid)
        with shard.lock.write():
            shard.dirty -= dirty
            shard.snapshot_time = time.monotonic()
        log.info(
            "%s shard %d: snapshot at sequence %d (%.1f MB, %.2fs)",
            self.config.name,
            shard.number,
            sequence,
            len(payload) / 1e6,
            time.monotonic() - started,
        )

    def _rebuild(self, shard: Shard) -> None:
        """Trains (IVF, PQ) or rebuilds without deleted vectors (HNSW), off the locks, then swaps."""
        started = time.monotonic()
        labels, vectors = self.store.shard_vectors(shard.number, self.config.dimension)
        index = self.kind.build(labels, vectors)
        with self._write_mutex:
            if self.closed:
                return
            above = int(labels[-1]) if len(labels) else -1
            more_labels, more_vectors = self.store.shard_vectors(shard.number, self.config.dimension, above)
            if len(more_labels):
                index.add_with_ids(more_vectors, more_labels)
            held = np.concatenate([labels, more_labels])
            dead = held[~np.isin(held, shard.rows.live_labels())]
            if len(dead) and self.kind.removable:
                index.remove_ids(faiss_batch(dead))
            shard.swap_index(index, 0 if self.kind.removable else len(dead))
        log.info(
            "%s shard %d: rebuilt %s over %d vectors in %.1fs",
            self.config.name,
            shard.number,
            self.kind.spec,
            len(held),
            time.monotonic() - started,
        )

    def drop_files(self, trash: Path) -> None:
        """Moves the collection's directory aside (atomic), then deletes it."""
        self.path.rename(trash)
        snapshots.fsync_dir(self.path.parent)
        shutil.rmtree(trash, ignore_errors=True)


def faiss_batch(labels: np.ndarray) -> faiss.IDSelectorBatch:
    return faiss.IDSelectorBatch(np.asarray(labels, dtype=np.int64))


def _shard_dir(path: Path, number: int) -> Path:
    return path / f"shard-{number:04d}"


def _load_shard(path: Path, store: Store, kind: IndexKind, number: int, rows: ShardRows) -> Shard:
    index = None
    held = np.zeros(0, dtype=np.int64)
    directory = _shard_dir(path, number)
    for _, file in snapshots.listing(directory):
        try:
            snap = snapshots.read(file, collection_uuid=store.uuid, max_sequence=store.last_seq)
            held = index_labels(snap.index)
            covered = rows.labels[rows.seqs <= snap.sequence]
            if not np.isin(covered, held).all():
                raise snapshots.SnapshotError(f"misses items it claims to cover (sequence {snap.sequence})")
            if len(held) and held[-1] >= store.next_label:
                raise snapshots.SnapshotError("holds labels the database never issued")
        except (snapshots.SnapshotError, RuntimeError) as exc:
            snapshots.quarantine(file, str(exc))
            held = np.zeros(0, dtype=np.int64)
            continue
        index = snap.index
        log.info("%s shard %d: loaded %s", path.name, number, file.name)
        break
    if index is None:
        index = kind.new_index()
    missing = rows.labels[~np.isin(rows.labels, held)]
    dead = held[~np.isin(held, rows.labels)]
    if len(missing):
        labels, vectors = store.vectors(missing, kind.dimension)
        index.add_with_ids(vectors, labels)
    table = RowTable()
    table.append(rows.labels, rows.ids, rows.metadata)
    shard = Shard(number, kind, index, table, dead_in_index=0)
    if len(dead):
        if shard.removable:
            index.remove_ids(faiss_batch(dead))
        else:
            shard.dead_in_index = len(dead)
    shard.dirty = len(missing) + len(dead)
    log.info(
        "%s shard %d: %d items, replayed %d, removed %d",
        path.name,
        number,
        rows.labels.size,
        len(missing),
        len(dead),
    )
    return shard


def check_found(collection: str, ids: Sequence[str], found: Container[str]) -> None:
    """NOT_FOUND naming (up to ten of) the ids that are not in ``found``."""
    missing = [item_id for item_id in dict.fromkeys(ids) if item_id not in found]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NotFoundError(f"ids not found in {collection!r}: {shown}{more}", field="ids")


def check_id(item_id: str, field: str) -> None:
    if not item_id:
        raise InvalidArgumentError(f"{field}: ids must not be empty", field=field)
    size = len(item_id.encode("utf-8", errors="surrogatepass"))
    if size > MAX_ID_BYTES:
        raise InvalidArgumentError(f"{field}: ids are at most {MAX_ID_BYTES} bytes, got {size}", field=field)


def _encode_metadata(metadata: Mapping[str, MetadataValue], field: str) -> str:
    for key, value in metadata.items():
        where = f"{field}.{key}"
        if not key:
            raise InvalidArgumentError(f"{field}: metadata keys must not be empty", field=field)
        if isinstance(value, bool) or isinstance(value, str):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidArgumentError(f"{where}: expected a string, bool or finite number", field=where)
    return encode_metadata({k: (float(v) if type(v) is int else v) for k, v in metadata.items()})


def check_search(k: int, offset: int, queries: int, params: SearchParams) -> None:
    """The limits of a search request, checked once where it enters (standalone or cluster)."""
    if not 1 <= k <= MAX_K:
        raise InvalidArgumentError(f"k must be in [1, {MAX_K}], got {k}", field="k")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgumentError(f"offset must be in [0, {MAX_OFFSET}], got {offset}", field="offset")
    if params.ef_search < 0 or params.nprobe < 0:
        name = "params.ef_search" if params.ef_search < 0 else "params.nprobe"
        raise InvalidArgumentError(f"{name} must not be negative", field=name)
    if not 1 <= queries <= MAX_QUERIES:
        raise InvalidArgumentError(
            f"queries: send 1 to {MAX_QUERIES} query vectors, got {queries}", field="queries"
        )


def top_hits(candidates: Iterable[Candidate], k: int, *, offset: int = 0) -> list[Hit]:
    """The page of hits that :func:`index_service.topk.best` picks from shard candidates."""
    chosen = topk.best(candidates, k, offset=offset, score=itemgetter(0), id=itemgetter(1))
    return [Hit(item_id, score, json.loads(metadata)) for score, item_id, metadata in chosen]
