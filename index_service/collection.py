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
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from operator import itemgetter
from pathlib import Path
from typing import NoReturn

import faiss
import numpy as np

from clipsearch.errors import (
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from clipsearch.schema import Field, FieldType, Schema, infer_from_values
from index_service import cursors, filters, hybrid, limits, quarantine, snapshots, topk
from index_service.config import (
    MAX_CONTENT_KEY_BYTES,
    MAX_ID_BYTES,
    CollectionConfig,
    CollectionInfo,
    Hit,
    HitGroup,
    MetadataValue,
    Metric,
    SearchParams,
    ShardStats,
    StoredItem,
    WriteResult,
)
from index_service.filters import Filter, evaluate
from index_service.hybrid import Pooled, SearchMode, TextQuery
from index_service.kinds import IndexKind, index_labels
from index_service.lexical import LexicalHit
from index_service.lexical import SearchOptions as LexicalOptions
from index_service.limits import DEFAULT_LIMITS, IndexLimits
from index_service.planner import DEFAULT_POLICY, EXHAUSTIVE, Plan, PlannerPolicy
from index_service.recall_monitor import RecallMonitor
from index_service.rows import RowTable, encode_metadata
from index_service.rwlock import check_may_wait
from index_service.shard import Candidate, Shard
from index_service.store import Change, ShardRows, Store, StoredRow

log = logging.getLogger(__name__)

MAX_K = limits.MAX_K
MAX_OFFSET = limits.MAX_OFFSET
MAX_QUERIES = limits.MAX_QUERIES
STORE_FILE = "store.sqlite"
MAX_GROUP_SIZE = limits.MAX_GROUP_SIZE
#: A grouped search first asks for this many candidates per wanted group (then 4x more).
GROUP_WIDEN = 4
#: Scroll: items per page by default and at most, rows read from the store per query, and
#: rows one call reads at most (a selective filter returns a short page, not a long call).
SCROLL_DEFAULT_LIMIT = 100
SCROLL_MAX_LIMIT = 10_000
SCROLL_BATCH = 1_000
SCROLL_SCAN_ROWS = 100_000


@dataclass(frozen=True)
class CollectionOptions:
    snapshot_min_ops: int = 50_000
    #: ...and at least this fraction of the shard's items, so the bytes snapshotted while a
    #: shard grows stay proportional to its size (a fixed count rewrites it O(n^2) times).
    snapshot_growth: float = 0.5
    snapshot_interval_s: float = 60.0
    rebuild_dead_ratio: float = 0.2
    exact_fallback_max: int = 20_000
    #: How a shard chooses between exact and approximate search (index_service/planner.py).
    planner: PlannerPolicy = DEFAULT_POLICY
    #: Re-runs a sample of searches exactly and exports their recall (None: off).
    recall_monitor: RecallMonitor | None = None
    #: What one request may ask for (index_service/limits.py; flags of the server).
    limits: IndexLimits = DEFAULT_LIMITS


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
        #: Why the collection refuses every call (a write could be neither applied nor undone).
        self.quarantine_reason: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, pool: Executor, options: CollectionOptions) -> Collection:
        """Loads the newest valid snapshot of every shard and replays the store over it."""
        store = Store(path / STORE_FILE)
        if store.config is None:
            store.close()
            raise RuntimeError(f"{path}: not a collection (no config in {STORE_FILE})")
        config = store.config
        try:
            kind = IndexKind.describe(config.index_spec, config.dimension, config.metric)
            rows = [store.shard_rows(number) for number in range(config.num_shards)]
            store.check_id_index(rows)
        except BaseException:
            store.close()
            raise
        folded = config.schema.folded() if config.schema is not None else frozenset()
        shards = [
            _load_shard(path, store, kind, number, rows[number], folded)
            for number in range(config.num_shards)
        ]
        for shard in shards:
            shard.applied_seq = store.last_seq
        return cls(path, store, shards, pool, options)

    def close(self, *, snapshot: bool) -> None:
        with self._maintenance_mutex, self._write_mutex:
            if self.closed:
                return
            self.closed = True
            if snapshot:
                try:
                    for shard in self.shards:
                        if shard.dirty:
                            self._snapshot(shard)
                except OSError as exc:  # no space left: the store has every write, replayed at start
                    log.warning("%s: no snapshot at close (%s)", self.config.name, exc.strerror or exc)
            for shard in self.shards:
                with shard.lock.write():
                    pass  # waits for searches in flight
            self.store.close()

    def info(self) -> CollectionInfo:
        stats = tuple(ShardStats(s.number, s.rows.live, s.trained) for s in self.shards)
        return CollectionInfo(
            self.config, sum(s.item_count for s in stats), stats, quarantine=self.quarantine_reason or ""
        )

    def _check_open(self) -> None:
        if self.closed:
            raise NotFoundError(f"collection {self.config.name!r} was dropped", field="collection")
        if self.quarantine_reason is not None:
            raise quarantine.refusal(self.config.name, self.quarantine_reason)

    def _check_fingerprint(self, fingerprint: str) -> None:
        mine = self.config.model_fingerprint
        if mine and fingerprint and fingerprint != mine:
            name, pretrained = self.config.model_name, self.config.model_pretrained
            held = f"{name} ({pretrained})" if pretrained else name or "another model"
            raise FailedPreconditionError(
                f"collection {self.config.name!r} holds vectors of {held} (fingerprint {mine[:19]}...), "
                f"not of the model that made these (fingerprint {fingerprint[:19]}...): search and write it "
                f"through an encoder serving {held}, or re-ingest into a new collection",
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
        content_keys: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
    ) -> WriteResult:
        """Inserts or replaces items; returns once the write is durable. The last of repeated ids wins.

        ``groups`` names the product each item is one vector of (an image, or its text); a
        grouped search returns distinct groups.

        Metadata is checked against the schema (INVALID_ARGUMENT naming ``items[i].metadata.<field>``);
        an empty collection without one takes its schema from this write's values.
        """
        self._check_open()
        self._check_fingerprint(model_fingerprint)
        metadata = list(metadata) if metadata is not None else [{}] * len(ids)
        keys = list(content_keys) if content_keys is not None else [""] * len(ids)
        group_of = list(groups) if groups is not None else [""] * len(ids)
        if not len(vectors) == len(ids) == len(metadata) == len(keys) == len(group_of):
            raise InvalidArgumentError("ids, vectors and metadata must have the same length", field="items")
        limits.check_batch(len(ids), "items", self.options.limits)
        limits.check_metadata(metadata, self.options.limits)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"items[{i}].id")
        for i, group in enumerate(group_of):
            if group:
                check_id(group, f"items[{i}].group")
        for i, key in enumerate(keys):
            if len(key) > MAX_CONTENT_KEY_BYTES:
                raise InvalidArgumentError(
                    f"items[{i}].content_key: at most {MAX_CONTENT_KEY_BYTES} bytes",
                    field=f"items[{i}].content_key",
                )
        matrix = self._matrix(vectors, "items[{}].vector")
        last = {item_id: i for i, item_id in enumerate(ids)}
        order = sorted(last.values())
        with self._write_mutex:
            self._check_open()
            schema, grown = self._schema_for(metadata)
            if grown is not None:
                limits.check_schema(grown.schema, self.options.limits, "items")
            encoded = [
                encode_metadata(schema.check_metadata(m, f"items[{i}].metadata") if schema else _legacy(m, i))
                for i, m in enumerate(metadata)
            ]
            limits.check_stored_metadata(encoded, self.options.limits)
            ids = [ids[i] for i in order]
            matrix = matrix[order]
            encoded = [encoded[i] for i in order]
            keys = [keys[i] for i in order]
            group_of = [group_of[i] for i in order]
            shards = [shard_of(item_id, len(self.shards)) for item_id in ids]
            change = self.store.upsert(ids, shards, matrix, encoded, keys, group_of, config=grown)
            try:
                if grown is not None:
                    self._set_config(grown)
                rows = np.asarray(change.added_rows, dtype=np.int64)
                added_shards = np.asarray([shards[i] for i in change.added_rows], dtype=np.int64)
                self._apply(
                    change.sequence,
                    change.removed,
                    added_shards,
                    change.added_labels,
                    rows,
                    matrix,
                    ids,
                    encoded,
                    group_of,
                )
                self._apply_in_place(change, encoded, group_of)
            except Exception as error:
                self._recover(error, undo=change)
        return WriteResult(len(ids), change.sequence)

    def delete(
        self,
        ids: Sequence[str] = (),
        *,
        groups: Sequence[str] = (),
        filter_: Filter | None = None,
        dry_run: bool = False,
    ) -> WriteResult:
        """Deletes the ids that exist, every item of ``groups`` and the items ``filter_`` selects;
        returns how many went (with ``dry_run``: would go, and nothing is deleted)."""
        self._check_selection(ids, groups, filter_)
        with self._write_mutex:
            self._check_open()
            chosen = self._selected(ids, groups, filter_)
            if dry_run or not chosen:
                return WriteResult(len(chosen), self.store.last_seq)
            change = self.store.delete(chosen)
            empty = np.zeros(0, dtype=np.int64)
            try:
                self._apply(change.sequence, change.removed, empty, empty, empty, None, [], [], [])
            except Exception as error:
                self._recover(error, undo=None)  # the delete stands; the shards are reloaded with it
        return WriteResult(change.count, change.sequence)

    def update_metadata(
        self,
        ids: Sequence[str] = (),
        *,
        groups: Sequence[str] = (),
        filter_: Filter | None = None,
        set_: Mapping[str, MetadataValue] | None = None,
        unset: Sequence[str] = (),
        dry_run: bool = False,
    ) -> WriteResult:
        """Sets and removes metadata fields of the chosen items, leaving their vectors alone.

        Checked against the schema (errors name ``set.<field>`` or ``unset[i]``). Returns how
        many items changed; items that already hold what is asked are not rewritten.
        """
        set_ = dict(set_ or {})
        self._check_selection(ids, groups, filter_)
        if not set_ and not unset:
            raise InvalidArgumentError("set and unset are both empty: nothing to change", field="set")
        for i, name in enumerate(unset):
            if not name or name in set_ or len(name.encode("utf-8", "surrogatepass")) > 128:
                why = (
                    "must not be empty"
                    if not name
                    else "is also in set"
                    if name in set_
                    else "is over 128 bytes"
                )
                raise InvalidArgumentError(f"unset[{i}]: {name[:40]!r} {why}", field=f"unset[{i}]")
        limits.check_batch(len(unset), "unset", self.options.limits)
        limits.check_metadata([set_], self.options.limits)
        with self._write_mutex:
            self._check_open()
            schema = self.schema
            if schema is not None:
                set_ = schema.check_metadata(set_, "set")
                for i, name in enumerate(unset):
                    if schema.get(name) is None:
                        raise schema.unknown_field(name, f"unset[{i}]")
            else:
                set_ = _legacy(set_, 0, where="set")
            chosen = self._selected(ids, groups, filter_)
            current = self.store.metadata_of(chosen)
            updated = {}
            for item_id, text in current.items():
                merged = {**json.loads(text), **set_}
                for name in unset:
                    merged.pop(name, None)
                new_text = encode_metadata(merged)
                if new_text != text:
                    updated[item_id] = new_text
            limits.check_stored_metadata(list(updated.values()), self.options.limits)
            if dry_run or not updated:
                return WriteResult(len(updated), self.store.last_seq)
            change = self.store.update_metadata(updated)
            try:
                by_shard: dict[int, tuple[list[int], list[str]]] = {}
                for shard_number, label, text in change.changed:
                    labels, texts = by_shard.setdefault(shard_number, ([], []))
                    labels.append(label)
                    texts.append(text)
                for shard in self.shards:
                    if shard.number in by_shard:
                        labels, texts = by_shard[shard.number]
                        shard.update_metadata(change.sequence, np.asarray(labels, dtype=np.int64), texts)
                    else:
                        shard.applied_seq = change.sequence
            except Exception as error:
                self._recover(error, undo=None)  # the update stands; the shards are reloaded with it
        return WriteResult(len(change.changed), change.sequence)

    def _check_selection(self, ids: Sequence[str], groups: Sequence[str], filter_: Filter | None) -> None:
        self._check_open()
        limits.check_batch(len(ids), "ids", self.options.limits)
        limits.check_batch(len(groups), "groups", self.options.limits)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        for i, group in enumerate(groups):
            check_id(group, f"groups[{i}]")
        if filter_ is not None:
            self._check_filter(filter_)

    def _selected(self, ids: Sequence[str], groups: Sequence[str], filter_: Filter | None) -> list[str]:
        """The existing items among ``ids``, of ``groups`` and matching ``filter_``, each once."""
        chosen = dict.fromkeys(self.store.existing(ids))
        chosen.update(dict.fromkeys(self.store.ids_of_groups(groups)))
        if filter_ is not None:
            for shard in self.shards:
                chosen.update(dict.fromkeys(shard.matching_ids(filter_)))
        return list(chosen)

    def _check_filter(self, filter_: Filter) -> None:
        """INVALID_ARGUMENT naming the condition that names an unknown field or the wrong type."""
        filters.check(filter_, self.schema, self._observed_kinds() if self.schema is None else {})

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
        groups: list[str],
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
                [groups[i] for i in picked],
            )

    def _apply_in_place(self, change: Change, metadata: list[str], groups: list[str]) -> None:
        """Rows an upsert updated in place (same vector): new metadata and group, same label."""
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for shard_number, label, position in change.in_place:
            by_shard.setdefault(shard_number, []).append((label, position))
        for shard in self.shards:
            rows = by_shard.get(shard.number)
            if rows:
                shard.update_metadata(
                    change.sequence,
                    np.asarray([label for label, _ in rows], dtype=np.int64),
                    [metadata[p] for _, p in rows],
                    [groups[p] for _, p in rows],
                )

    def _recover(self, error: Exception, *, undo: Change | None) -> NoReturn:
        """A committed write could not be applied to the shards: undo it, reload, refuse the call.

        An upsert is undone in the store (the rows it replaced come back), so a write that can
        never be applied does not stay there to fail every start; then the shards are reloaded
        from the store, since the failed apply may have changed some of them. If that fails
        too, the collection is quarantined: it refuses calls until a restart reloads it (and
        sets it aside again if it still cannot load), while the other collections serve.
        """
        log.error("%s: a committed write could not be applied (%r); undoing it", self.config.name, error)
        try:
            if undo is not None:
                self.store.undo(undo)
                if undo.config_before is not None:
                    self._set_config(undo.config_before)
            self._reload_shards()
        except Exception as again:
            self.quarantine_reason = (
                f"a write could not be applied ({error!r}) nor undone ({again!r}); restart the index "
                "to reload the collection from its store"
            )
            log.critical("%s: quarantined: %s", self.config.name, self.quarantine_reason, exc_info=True)
            raise InternalError(f"collection {self.config.name!r}: {self.quarantine_reason}") from error
        done = "was undone" if undo is not None else "stands (reloaded)"
        if isinstance(error, MemoryError):
            raise ResourceExhaustedError(
                f"collection {self.config.name!r}: the index ran out of memory applying the write, which "
                f"{done}",
                retry_after_s=5.0,
            ) from error
        raise InternalError(
            f"collection {self.config.name!r}: the write could not be applied ({error}) and {done}"
        ) from error

    def _reload_shards(self) -> None:
        """Every shard again from the store (and the snapshots that still match it)."""
        rows = [self.store.shard_rows(number) for number in range(self.config.num_shards)]
        self.store.check_id_index(rows)
        folded = self.config.schema.folded() if self.config.schema is not None else frozenset()
        shards = [
            _load_shard(self.path, self.store, self.kind, number, rows[number], folded)
            for number in range(self.config.num_shards)
        ]
        for shard in shards:
            shard.applied_seq = self.store.last_seq
        self.shards = shards

    # -- reads -------------------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, include_vectors: bool = False, missing_ok: bool = False
    ) -> list[StoredItem]:
        """Items in the order asked; NOT_FOUND naming the ids that do not exist, unless ``missing_ok``."""
        self._check_open()
        limits.check_batch(len(ids), "ids", self.options.limits)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        found = self.store.get(ids)
        if not missing_ok:
            check_found(self.config.name, ids, found)
        items = []
        for item_id in ids:
            if item_id not in found:
                continue
            items.append(_stored_item(found[item_id], include_vectors))
        return items

    def count(self, filter_: Filter | None = None) -> int:
        """How many items the filter selects (all of them without one)."""
        self._check_open()
        if filter_ is not None:
            self._check_filter(filter_)
        return sum(shard.count(filter_) for shard in self.shards)

    def scroll(
        self,
        *,
        filter_: Filter | None = None,
        limit: int = 0,
        cursor: str = "",
        include_vectors: bool = False,
    ) -> tuple[list[StoredItem], str]:
        """A page of items in id order after ``cursor``, and the cursor of the next page ("" at the end).

        Pages follow ids, not positions, so writes between pages move nothing: every item that
        exists from the first page to the last comes exactly once. One call reads at most
        ``SCROLL_SCAN_ROWS`` rows, so a page of a selective filter may hold fewer than ``limit``
        items; only an empty next cursor means the end.
        """
        self._check_open()
        limit = limit or SCROLL_DEFAULT_LIMIT
        if not 1 <= limit <= SCROLL_MAX_LIMIT:
            raise InvalidArgumentError(
                f"limit must be in [1, {SCROLL_MAX_LIMIT}], got {limit}", field="limit"
            )
        if filter_ is not None:
            self._check_filter(filter_)
        after = cursors.decode(cursor, self.config.name)
        folded = self.schema.folded() if self.schema is not None else frozenset()
        items: list[StoredItem] = []
        scanned = 0
        while scanned < SCROLL_SCAN_ROWS:
            batch = self.store.scroll(after, min(SCROLL_BATCH, SCROLL_SCAN_ROWS - scanned))
            if filter_ is not None and batch:
                table = RowTable(folded)
                table.append(np.arange(len(batch)), [r.id for r in batch], [r.metadata for r in batch])
                keep = evaluate(filter_, table)
            else:
                keep = np.ones(len(batch), dtype=bool)
            for row, kept in zip(batch, keep.tolist(), strict=True):
                after = row.id
                if kept:
                    items.append(_stored_item(row, include_vectors))
                    if len(items) == limit:
                        return items, cursors.encode(self.config.name, after)
            scanned += len(batch)
            if len(batch) < SCROLL_BATCH:
                return items, ""
        return items, cursors.encode(self.config.name, after)

    # -- the schema --------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        return self.config.schema

    def _schema_for(
        self, metadata: Sequence[Mapping[str, MetadataValue]]
    ) -> tuple[Schema | None, CollectionConfig | None]:
        """(the schema to check this write with, the new config if this write sets it).

        Called under the write mutex. An empty collection without a schema takes the types of
        this write's values; one made before schemas existed (it has items) stays without.
        """
        if self.schema is not None or not any(metadata) or any(s.rows.n for s in self.shards):
            return self.schema, None
        schema = infer_from_values(metadata)
        return schema, replace(self.config, schema=schema)

    def add_fields(self, fields: Sequence[Field]) -> CollectionInfo:
        """Adds fields to the schema; a collection without one gets one, with the types its items hold."""
        self._check_open()
        with self._write_mutex:
            self._check_open()
            base = self.schema if self.schema is not None else self._observed_schema()
            schema = base.with_fields(fields)
            limits.check_schema(schema, self.options.limits, "fields")
            if schema != self.schema:
                config = replace(self.config, schema=schema)
                with self.store.transaction() as db:
                    self.store.set_config(db, config)
                try:
                    self._set_config(config)
                except Exception as error:
                    self.config = config
                    self._recover(error, undo=None)  # the schema stands; the shards are reloaded with it
        return self.info()

    def _observed_kinds(self) -> dict[str, set[str]]:
        """field -> the kinds of values (number, string, bool, list) its items hold, over all shards."""
        kinds: dict[str, set[str]] = {}
        for shard in self.shards:
            rows = shard.rows
            for name, column in list(rows.columns.items()):
                kinds.setdefault(name, set()).update(column.kinds(rows.alive[: rows.n]))
        return kinds

    def _observed_schema(self) -> Schema:
        """The schema the stored items imply (a collection made before schemas); conflicts refused."""
        kinds: dict[str, set[FieldType]] = {}
        for shard in self.shards:
            for name, kind in shard.rows.field_kinds():
                kinds.setdefault(name, set()).add(kind)
        mixed = {name: sorted(k.value for k in found) for name, found in kinds.items() if len(found) > 1}
        if mixed:
            shown = "; ".join(
                f"{name} holds {' and '.join(found)} values" for name, found in sorted(mixed.items())
            )
            raise FailedPreconditionError(
                f"collection {self.config.name!r} has no schema and its items disagree: {shown}. Re-ingest "
                "them with one type per field (or into a new collection with a declared schema)"
            )
        return Schema(tuple(Field(name, found.pop()) for name, found in sorted(kinds.items())))

    def _set_config(self, config: CollectionConfig) -> None:
        """New settings (a grown schema) for readers: the shards' case-folded fields follow it."""
        folded = config.schema.folded() if config.schema is not None else frozenset()
        for shard in self.shards:
            shard.set_folded(folded)
        self.config = config

    def search(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        k: int,
        *,
        offset: int = 0,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
        plans: list[Plan] | None = None,
    ) -> list[list[Hit]]:
        """The best ``k`` hits after ``offset`` for every query (:mod:`~index_service.topk` order);
        each shard's plan goes to ``plans`` when given."""
        params = params or SearchParams()
        check_search(k, offset, len(queries), params, self.options.limits)
        parts = self.candidates(
            queries,
            k + offset,
            filter_=filter_,
            params=params,
            model_fingerprint=model_fingerprint,
            plans=plans,
        )
        monitor = self.options.recall_monitor
        if monitor is not None and monitor.wants(self):
            found = [[hit.id for hit in top_hits(row, k + offset)] for row in parts]
            monitor.offer(self, queries, k + offset, filter_, found)
        return [top_hits(row, k, offset=offset) for row in parts]

    def exact_candidates(
        self, queries: Sequence[np.ndarray] | np.ndarray, width: int, *, filter_: Filter | None = None
    ) -> list[list[str]]:
        """The ids of the exact best ``width`` per query, by brute force (the recall monitor's reference)."""
        self._check_open()
        matrix = self._matrix(queries, "queries[{}]")
        read, params = self._vector_reader, SearchParams()
        parts = [
            shard.search(matrix, width, filter_, params, read, 0, None, EXHAUSTIVE) for shard in self.shards
        ]
        return [
            [hit.id for hit in top_hits([c for part in parts for c in part[q]], width)]
            for q in range(len(matrix))
        ]

    def search_groups(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        k: int,
        group_size: int,
        *,
        offset: int = 0,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
    ) -> list[list[HitGroup]]:
        """The best ``k`` distinct groups (products) after ``offset`` per query, each with its best
        ``group_size`` hits; the search widens until it has them or has seen every item."""
        params = params or SearchParams()
        check_search(k, offset, len(queries), params, self.options.limits)
        check_group_size(group_size)
        total = sum(shard.rows.live for shard in self.shards)
        results: list[list[HitGroup]] = []
        for width in group_widths(k + offset, group_size, total):
            parts = self.candidates(
                queries, width, filter_=filter_, params=params, model_fingerprint=model_fingerprint
            )
            results, short = pick_groups(parts, k, offset, group_size)
            if not short:
                break
        return results

    def candidates(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        width: int,
        *,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
        plans: list[Plan] | None = None,
    ) -> list[list[Candidate]]:
        """Every shard's best ``width`` candidates per query, unmerged (the cluster merges across groups).

        The request was checked by :func:`check_search` where it entered (here, or before a
        cluster fans it out): ``width`` is ``k + offset``.
        """
        self._check_open()
        self._check_fingerprint(model_fingerprint)
        if filter_ is not None:
            self._check_filter(filter_)
        if not 1 <= width <= MAX_K + MAX_OFFSET:
            raise InvalidArgumentError(
                f"k + offset must be in [1, {MAX_K + MAX_OFFSET}], got {width}", field="k"
            )
        params = params or SearchParams()
        matrix = self._matrix(queries, "queries[{}]")
        read = self._vector_reader
        fallback = self.options.exact_fallback_max

        policy = self.options.planner

        def search_shard(shard: Shard) -> list[list[Candidate]]:
            return shard.search(matrix, width, filter_, params, read, fallback, plans, policy)

        if len(self.shards) == 1:
            return search_shard(self.shards[0])
        check_may_wait("the shard pool", structural=True)
        parts = list(self._pool.map(search_shard, self.shards))
        return [[c for part in parts for c in part[q]] for q in range(len(matrix))]

    @property
    def has_text_fields(self) -> bool:
        """Whether its schema has text or keyword fields (a lexical index: keyword search)."""
        return self.store.lexical is not None

    def text_search(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        query: TextQuery,
        k: int,
        *,
        offset: int = 0,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
        group_size: int | None = None,
    ) -> list[list[Hit]] | list[list[HitGroup]]:
        """A keyword or hybrid search (index_service/hybrid.py): each query's page of ``k`` hits
        (or products, with ``group_size``) after ``offset``, fused from both retrievals."""
        params = params or SearchParams()
        check_search(k, offset, len(query.texts), params, self.options.limits)
        if group_size is not None:
            check_group_size(group_size)
        total = sum(shard.rows.live for shard in self.shards)
        widths = group_widths(k + offset, group_size, total) if group_size is not None else iter([k + offset])
        pages: list = []
        for wanted in widths:
            width = query.width(wanted)
            pools = self.text_candidates(
                queries, query, width, filter_=filter_, params=params, model_fingerprint=model_fingerprint
            )
            pages, short = hybrid.results(pools, query, k, offset, width, group_size)
            if not short:
                break
        return pages

    def text_candidates(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        query: TextQuery,
        width: int,
        *,
        filter_: Filter | None = None,
        params: SearchParams | None = None,
        model_fingerprint: str = "",
    ) -> list[list[Pooled]]:
        """Each query's pool: the best ``width`` of each side under one filter, every candidate
        scored by both sides where it can be (stage 1 of index_service/hybrid.py; the cluster
        merges the pools of its shard groups)."""
        self._check_open()
        lexical = self.store.lexical
        if lexical is None:
            raise FailedPreconditionError(
                f"collection {self.config.name!r} has no text or keyword fields for a keyword search: "
                "declare some in its schema (docs/schema.md; `clipsearch collections add-fields`)"
            )
        unknown = sorted(set(query.field_weights) - set(lexical.fields.names))
        if unknown:
            raise InvalidArgumentError(
                f"hybrid.field_weights[{unknown[0]}]: not a text or keyword field of collection "
                f"{self.config.name!r} (those are: {', '.join(lexical.fields.names)})",
                field=f"hybrid.field_weights[{unknown[0]}]",
            )
        if filter_ is not None:
            self._check_filter(filter_)
        vectors = query.mode == SearchMode.HYBRID
        if vectors and len(queries) != len(query.texts):
            raise InvalidArgumentError(
                f"texts: a hybrid search needs one text per query vector ({len(queries)} queries, "
                f"{len(query.texts)} texts)",
                field="texts",
            )
        options = LexicalOptions(
            weights=dict(query.field_weights), fill_any_word=query.mode == SearchMode.KEYWORD
        )
        tests = [shard.membership(filter_) for shard in self.shards]

        def allowed(labels: np.ndarray) -> np.ndarray:
            keep = np.zeros(len(labels), dtype=bool)
            for test in tests:
                keep |= test(labels)
            return keep

        def keyword_side(text: str) -> list[LexicalHit]:
            return self.store.lexical_search(text, width, allowed, options)

        # The keyword side runs beside the vector side and its scoring (SQLite and FAISS release
        # the GIL): hybrid latency is max(vector + BM25 of its candidates, keyword search), not
        # their sum. The vector side's BM25 scores every vector candidate, also those the
        # keyword side finds (its own scores win for those), so it need not wait for it.
        keyword = [self._pool.submit(keyword_side, text) for text in query.texts] if vectors else []
        try:
            parts = (
                self.candidates(
                    queries, width, filter_=filter_, params=params, model_fingerprint=model_fingerprint
                )
                if vectors
                else [[] for _ in query.texts]
            )
            matrix = self._matrix(queries, "queries[{}]") if vectors else None
            pools = []
            for q, text in enumerate(query.texts):
                vector_side = topk.best(parts[q], width, score=itemgetter(0), id=itemgetter(1))
                scored = self._keyword_scores(text, vector_side, options)
                found = keyword[q].result() if vectors else keyword_side(text)
                pools.append(
                    self._scored_pool(vector_side, found, scored, matrix[q] if matrix is not None else None)
                )
        finally:
            for future in keyword:
                future.cancel()
        return pools

    def _keyword_scores(
        self, text: str, vector_side: list[Candidate], options: LexicalOptions
    ) -> list[LexicalHit]:
        """The keyword side's scores of the vector side's candidates (those matching a query word)."""
        if not vector_side:
            return []
        labels = list(self.store.labels_of([c[1] for c in vector_side]).values())
        return self.store.lexical_scores(text, labels, options)

    def _scored_pool(
        self,
        vector_side: list[Candidate],
        keyword_side: list[LexicalHit],
        scored: list[LexicalHit],
        query: np.ndarray | None,
    ) -> list[Pooled]:
        """Both sides' candidates of one query, each scored by the other side too (``scored``:
        the keyword side's scores of the vector side's candidates)."""
        keyword = {hit.id: hit for hit in scored}
        keyword.update((hit.id, hit) for hit in keyword_side)
        pool = [
            Pooled(
                item_id,
                metadata,
                group,
                score,
                keyword[item_id].score if item_id in keyword else None,
                keyword[item_id].matched if item_id in keyword else (),
                keyword[item_id].exact if item_id in keyword else (),
            )
            for score, item_id, metadata, group in vector_side
        ]
        in_vector = {c[1] for c in vector_side}
        only = [hit for hit in keyword_side if hit.id not in in_vector]
        if not only:
            return pool
        labels = np.asarray(sorted(hit.label for hit in only), dtype=np.int64)
        items: dict[int, tuple[str, str, str]] = {}
        for shard in self.shards:
            items.update(shard.items(labels))
        scores: dict[int, float] = {}
        if query is not None:
            found, vectors = self.store.vectors(labels, self.config.dimension)
            if self.config.metric == Metric.L2:
                values = -((vectors - query) ** 2).sum(axis=1)
            else:
                values = vectors @ query
            scores = {int(label): float(value) for label, value in zip(found, values, strict=True)}
        for hit in only:
            if hit.label not in items:
                continue  # deleted since the keyword side read it
            item_id, metadata, group = items[hit.label]
            pool.append(
                Pooled(item_id, metadata, group, scores.get(hit.label), hit.score, hit.matched, hit.exact)
            )
        return pool

    def _vector_reader(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_may_wait("the store")
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
            # A vector already of unit length is kept bit for bit, so writing back a stored
            # vector (a metadata change) leaves it equal and the item is updated in place.
            matrix = (matrix / np.where(np.abs(norms - 1.0) <= 1e-6, 1.0, norms)).astype(np.float32)
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

    def backup_to(self, folder: Path) -> tuple[int, int]:
        """Copies the shards' newest snapshots, then the store (online), into ``folder``:
        (items, sequence) of the copy. Maintenance waits meanwhile; writes and searches go on.
        See index_service/backup.py for why this order is consistent."""
        self._check_open()
        with self._maintenance_mutex:
            for shard in self.shards:
                for _, file in snapshots.listing(_shard_dir(self.path, shard.number))[:1]:
                    target = folder / file.parent.name / file.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
            folder.mkdir(parents=True, exist_ok=True)
            return self.store.backup_to(folder / STORE_FILE)

    def drop_files(self, trash: Path) -> None:
        """Moves the collection's directory aside (atomic), then deletes it."""
        self.path.rename(trash)
        snapshots.fsync_dir(self.path.parent)
        shutil.rmtree(trash, ignore_errors=True)


def faiss_batch(labels: np.ndarray) -> faiss.IDSelectorBatch:
    return faiss.IDSelectorBatch(np.asarray(labels, dtype=np.int64))


def _shard_dir(path: Path, number: int) -> Path:
    return path / f"shard-{number:04d}"


def _load_shard(
    path: Path, store: Store, kind: IndexKind, number: int, rows: ShardRows, folded: frozenset[str]
) -> Shard:
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
    table = RowTable(folded)
    table.append(rows.labels, rows.ids, rows.metadata, rows.groups)
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


def _legacy(metadata: Mapping[str, MetadataValue], i: int, where: str = "") -> dict[str, MetadataValue]:
    """Values for a collection made before schemas: any supported type, checked for shape."""
    where = where or f"items[{i}].metadata"
    checked: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not key:
            raise InvalidArgumentError(f"{where}: metadata keys must not be empty", field=where)
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise InvalidArgumentError(f"{where}.{key}: lists hold strings only", field=f"{where}.{key}")
            checked[key] = list(value)
        elif isinstance(value, (bool, str)):
            checked[key] = value
        elif isinstance(value, (int, float)) and math.isfinite(value):
            checked[key] = float(value) if type(value) is int else value
        else:
            raise InvalidArgumentError(
                f"{where}.{key}: expected a string, bool, finite number or list of strings",
                field=f"{where}.{key}",
            )
    return checked


def check_search(
    k: int, offset: int, queries: int, params: SearchParams, bounds: IndexLimits = DEFAULT_LIMITS
) -> None:
    """The limits of a search request, checked once where it enters (standalone or cluster)."""
    limits.check_search(k, offset, queries, params.ef_search, params.nprobe, bounds)


def top_hits(candidates: Iterable[Candidate], k: int, *, offset: int = 0) -> list[Hit]:
    """The page of hits that :func:`index_service.topk.best` picks from shard candidates."""
    chosen = topk.best(candidates, k, offset=offset, score=itemgetter(0), id=itemgetter(1))
    return [_hit(candidate) for candidate in chosen]


def _hit(candidate: Candidate) -> Hit:
    score, item_id, metadata, group = candidate
    return Hit(item_id, score, json.loads(metadata), group, stored_metadata=metadata)


def check_group_size(size: int) -> None:
    if not 1 <= size <= MAX_GROUP_SIZE:
        raise InvalidArgumentError(
            f"group_by.size must be in [1, {MAX_GROUP_SIZE}], got {size}", field="group_by.size"
        )


def group_widths(wanted: int, group_size: int, total: int) -> Iterator[int]:
    """Candidates per query a grouped search asks for, widening until ``wanted`` groups are
    found (the caller stops) or every one of ``total`` items was asked for (or the cap of one
    search, MAX_K + MAX_OFFSET). Products with many close vectors need the wider rounds."""
    cap = MAX_K + MAX_OFFSET
    width = min(max(wanted * GROUP_WIDEN, 2 * wanted * group_size), cap)
    yield width
    while width < min(total, cap):
        width = min(width * 4, cap)
        yield width


def pick_groups(
    parts: list[list[Candidate]], k: int, offset: int, group_size: int
) -> tuple[list[list[HitGroup]], bool]:
    """(the page of groups of every query, whether a query found fewer than ``k + offset``).

    ``parts``: each query's candidates, unmerged (a collection's shards or a cluster's groups).
    A group's rank is its best hit's (ties: the hit's id), so the groups and their best hits
    are those of an exhaustive search (over what the index returns). A group's further hits
    are its best among the candidates looked at: a group may show fewer than ``group_size``
    even when it has more (as Qdrant's groups API; docs/sdk.md).
    """
    wanted = k + offset
    results = [_groups_of(part, wanted, group_size) for part in parts]
    short = any(len(groups) < wanted for groups in results)
    return [groups[offset:wanted] for groups in results], short


def _groups_of(candidates: list[Candidate], wanted: int, group_size: int) -> list[HitGroup]:
    """The first ``wanted`` complete groups of the candidates in top-k order."""
    ordered = topk.best(candidates, len(candidates), score=itemgetter(0), id=itemgetter(1))
    members: dict[str, list[Hit]] = {}
    for candidate in ordered:
        key = candidate[3] or candidate[1]
        hits = members.get(key)
        if hits is None:
            if len(members) == wanted:
                continue  # a group further down: only the chosen groups still fill up
            hits = members[key] = []
        if len(hits) < group_size:
            hits.append(_hit(candidate))
    return [HitGroup(key, tuple(hits)) for key, hits in members.items()]


def _stored_item(row: StoredRow, include_vectors: bool) -> StoredItem:
    vector = None
    if include_vectors and row.vector is not None:
        vector = np.frombuffer(row.vector, dtype="<f4").astype(np.float32)
    return StoredItem(row.id, json.loads(row.metadata), vector, row.content_key, row.group)
