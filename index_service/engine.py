"""The index engine: every collection under one data directory, and their upkeep.

Layout (docs/index.md)::

    <data-dir>/LOCK                             flock: one server per data directory
    <data-dir>/collections/<name>/store.sqlite  source of truth (WAL)
    <data-dir>/collections/<name>/shard-NNNN/snap-<sequence>.faiss
    <data-dir>/tmp/, <data-dir>/trash/          half-made and half-dropped collections

A collection is created in ``tmp/`` and renamed into ``collections/``; dropped by renaming
into ``trash/`` and deleting there. Both renames are atomic, so a crash never leaves a
half-made collection in ``collections/``; ``tmp/`` and ``trash/`` are emptied at start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss

from clipsearch.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from index_service import datadir, limits, quarantine, snapshots
from index_service.aliases import Alias, AliasTable
from index_service.collection import STORE_FILE, Collection, CollectionOptions
from index_service.config import CollectionConfig, CollectionInfo, check_name
from index_service.kinds import IndexKind
from index_service.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    data_dir: Path
    search_threads: int = 2
    #: OpenMP threads inside one FAISS call, set in every thread that calls FAISS (the setting
    #: is per thread: a pool thread left alone would use every core and spin against the others).
    omp_threads: int = 1
    collection: CollectionOptions = field(default_factory=CollectionOptions)
    #: Run snapshots, training and rebuilds in a background thread (tests may drive them by hand).
    background: bool = True
    #: Seconds the background thread sleeps when nothing is due.
    idle_s: float = 0.5


class DataDirLockedError(RuntimeError):
    pass


class CollectionLoadError(RuntimeError):
    """A collection on disk cannot be opened (damaged or foreign files): it is quarantined."""


class Engine:
    def __init__(self, options: EngineOptions):
        self.options = options
        self.root = Path(options.data_dir)
        for sub in ("collections", "tmp", "trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.root / "LOCK", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirLockedError(f"{self.root} is in use by another index server") from None
        self.aliases = AliasTable(self.root)
        #: Set (with the reason) once the data directory was removed or replaced under the server.
        self.failed: str | None = None
        #: Called (from any thread) once, when ``failed`` is set: the server turns NOT_SERVING.
        self.on_failure: Callable[[str], None] | None = None
        self._watch = datadir.DataDirWatch(self.root)
        for sub in ("tmp", "trash"):
            for leftover in (self.root / sub).iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        self._pool = ThreadPoolExecutor(
            options.search_threads,
            thread_name_prefix="shard-search",
            initializer=faiss.omp_set_num_threads,
            initargs=(options.omp_threads,),
        )
        self._mutex = threading.Lock()
        self._collections: dict[str, Collection] = {}
        #: Collections that could not be loaded, set aside with their files (index_service/quarantine.py).
        self._quarantined: dict[str, quarantine.Quarantined] = {}
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        for path in sorted((self.root / "collections").iterdir()):
            if (path / STORE_FILE).exists():
                try:
                    self._collections[path.name] = Collection.open(path, self._pool, options.collection)
                except Exception as exc:
                    error = CollectionLoadError(f"collection {path.name!r} ({path}): {exc}")
                    error.__cause__ = exc
                    self._quarantined[path.name] = quarantine.set_aside(
                        path.name, path, path / STORE_FILE, error
                    )
        if options.background:
            self._worker = threading.Thread(
                target=self._maintain_forever, name="index-maintenance", daemon=True
            )
            self._worker.start()

    # -- collections -------------------------------------------------------------------------

    def create_collection(self, config: CollectionConfig, *, exist_ok: bool = False) -> CollectionInfo:
        asked, config = config, config.validated()
        limits.check_schema(config.schema, self.options.collection.limits, "config.schema")
        IndexKind.describe(config.index_spec, config.dimension, config.metric)
        with self._mutex:
            alias = self.aliases.get(config.name)
            if alias is not None:
                raise AlreadyExistsError(
                    f"{config.name!r} is the name of an alias (of {alias.collection!r}); a collection "
                    "needs a name of its own",
                    field="config.name",
                )
            if config.name in self._quarantined:
                raise AlreadyExistsError(
                    f"collection {config.name!r} already exists and is quarantined "
                    f"({self._quarantined[config.name].reason}); drop it first",
                    field="config.name",
                )
            existing = self._collections.get(config.name)
            if existing is not None:
                differences = existing.config.differences(asked)
                if exist_ok and not differences:
                    return existing.info()
                detail = f" with other settings: {'; '.join(differences)}" if exist_ok else ""
                raise AlreadyExistsError(
                    f"collection {config.name!r} already exists{detail}. Use it as it is (leave those "
                    "settings out), choose another name, or drop it first",
                    field="config.name",
                )
            staging = self.root / "tmp" / f"{config.name}.{uuid.uuid4().hex}"
            staging.mkdir()
            Store.create(staging / STORE_FILE, config).close()
            final = self.root / "collections" / config.name
            os.replace(staging, final)
            snapshots.fsync_dir(final.parent)
            collection = Collection.open(final, self._pool, self.options.collection)
            self._collections[config.name] = collection
            return collection.info()

    def collection(self, name: str, *, model_fingerprint: str = "") -> Collection:
        """The collection ``name`` names, directly or as an alias.

        Through an alias, a request tagged with the fingerprint of the model the alias's
        previous collection holds (and not its current one's) reaches the previous
        collection: clients still on the old model keep working after the swap.
        """
        return self._by_name(self.resolve(name, model_fingerprint=model_fingerprint))

    def resolve(self, name: str, *, model_fingerprint: str = "") -> str:
        """The collection name behind ``name`` (itself, unless it is an alias)."""
        check_name(name)
        alias = self.aliases.get(name)
        if alias is None or name in self._collections:
            return name
        if model_fingerprint and alias.previous:
            current, previous = self._collections.get(alias.collection), self._collections.get(alias.previous)
            if (
                previous is not None
                and previous.config.model_fingerprint == model_fingerprint
                and (current is None or current.config.model_fingerprint != model_fingerprint)
            ):
                return alias.previous
        return alias.collection

    def _by_name(self, name: str) -> Collection:
        found = self._collections.get(name)
        if found is None:
            set_aside = self._quarantined.get(name)
            if set_aside is not None:
                raise set_aside.refusal()
            raise NotFoundError(f"no collection named {name!r}", field="collection")
        return found

    def describe(self, name: str) -> CollectionInfo:
        """A collection's settings and counts; a quarantined one's reason (it is not an error to ask)."""
        name = self.resolve(name)
        set_aside = self._quarantined.get(name)
        info = set_aside.info() if set_aside is not None else self._by_name(name).info()
        return replace(info, aliases=tuple(self.aliases.pointing_at(name)))

    def list_collections(self) -> list[CollectionInfo]:
        infos = {name: c.info() for name, c in self._collections.items()}
        infos.update((name, q.info()) for name, q in self._quarantined.items())
        return [
            replace(info, aliases=tuple(self.aliases.pointing_at(name)))
            for name, info in sorted(infos.items())
        ]

    def check_name_free(self, name: str) -> None:
        """ALREADY_EXISTS if a collection or an alias has the name."""
        check_name(name)
        if name in self._collections or name in self._quarantined:
            raise AlreadyExistsError(
                f"collection {name!r} already exists: restore under another name (rename) or drop it first",
                field="collection",
            )
        alias = self.aliases.get(name)
        if alias is not None:
            raise AlreadyExistsError(
                f"{name!r} is the name of an alias (of {alias.collection!r})", field="collection"
            )

    def adopt(self, folder: Path, name: str, *, expected_items: int) -> CollectionInfo:
        """Verifies a restored collection's files (unpacked into ``tmp/``), then serves them as ``name``."""
        store = Store(folder / STORE_FILE)
        try:
            if store.config is None:
                raise InvalidArgumentError(f"data: {folder.name!r} has no collection config", field="data")
            items = store.verify()
            if items != expected_items:
                raise InvalidArgumentError(
                    f"data: {folder.name!r} holds {items} items, its manifest says {expected_items}",
                    field="data",
                )
            if store.config.name != name:
                store.rename(name)
        finally:
            store.close()
        Collection.open(folder, self._pool, self.options.collection).close(snapshot=False)  # checks the rest
        with self._mutex:
            self.check_name_free(name)
            final = self.root / "collections" / name
            os.replace(folder, final)
            snapshots.fsync_dir(final.parent)
            collection = Collection.open(final, self._pool, self.options.collection)
            self._collections[name] = collection
        log.info("restored collection %r (%d items)", name, expected_items)
        return collection.info()

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> str:
        """Points ``alias`` at ``collection`` (creating or switching it); returns the previous target."""
        check_name(alias, "alias")
        check_name(collection)
        with self._mutex:
            if alias in self._collections or alias in self._quarantined:
                raise InvalidArgumentError(
                    f"alias: {alias!r} is the name of a collection; an alias needs a name of its own",
                    field="alias",
                )
            if collection not in self._collections:
                pointed = self.aliases.get(collection)
                why = f" ({collection!r} is an alias of {pointed.collection!r})" if pointed else ""
                raise NotFoundError(f"no collection named {collection!r}{why}", field="collection")
            previous = self.aliases.set(alias, collection)
        log.info("alias %r -> %r (was %r)", alias, collection, previous or None)
        return previous

    def delete_alias(self, alias: str, *, missing_ok: bool = False) -> bool:
        with self._mutex:
            return self.aliases.delete(alias, missing_ok=missing_ok)

    def list_aliases(self) -> list[Alias]:
        return self.aliases.all()

    def quarantined(self) -> dict[str, str]:
        """name -> reason, of every collection that refuses calls (set aside at start, or since)."""
        found = {name: q.reason for name, q in self._quarantined.items()}
        found.update((n, c.quarantine_reason) for n, c in self._collections.items() if c.quarantine_reason)
        return found

    def collections(self) -> list[tuple[str, Collection]]:
        """(name, collection) pairs, sorted by name: a snapshot of the current set."""
        return sorted(self._collections.items())

    def drop_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        """Drops a collection by its own name; refused while an alias points at it."""
        check_name(name)
        with self._mutex:
            alias = self.aliases.get(name)
            if alias is not None and name not in self._collections:
                raise InvalidArgumentError(
                    f"collection: {name!r} is an alias of {alias.collection!r}; drop collections by "
                    "their own name (or delete the alias with DeleteAlias)",
                    field="collection",
                )
            pointing = self.aliases.pointing_at(name)
            if pointing:
                raise FailedPreconditionError(
                    f"collection {name!r} is what alias {', '.join(map(repr, pointing))} points at: point "
                    "the alias at another collection (SetAlias) or delete it first",
                    field="collection",
                )
            collection = self._collections.pop(name, None)
            set_aside = self._quarantined.pop(name, None)
            if collection is not None or set_aside is not None:
                self.aliases.forget(name)
        if set_aside is not None:
            trash = self.root / "trash" / f"{name}.{uuid.uuid4().hex}"
            set_aside.path.rename(trash)
            snapshots.fsync_dir(set_aside.path.parent)
            shutil.rmtree(trash, ignore_errors=True)
            log.warning("dropped the quarantined collection %r", name)
            return True
        if collection is None:
            if missing_ok:
                return False
            raise NotFoundError(f"no collection named {name!r}", field="collection")
        collection.close(snapshot=False)
        collection.drop_files(self.root / "trash" / f"{name}.{uuid.uuid4().hex}")
        return True

    # -- upkeep ------------------------------------------------------------------------------

    def check_data_dir(self) -> str | None:
        """Why writes must be refused (the data directory is gone or replaced), or None.

        Checked before every write and by the upkeep thread. A collection whose own files
        went (its folder removed) is quarantined; the others keep serving.
        """
        if self.failed is not None:
            return self.failed
        problem = self._watch.problem()
        if problem is not None:
            self.failed = f"the data directory {self.root} was removed or replaced while serving ({problem})"
            log.critical(
                "%s. Writes can no longer be made durable: they are refused and health is NOT_SERVING "
                "until the index is restarted on an intact data directory (restore it from a backup; "
                "writes acknowledged before this are only in the removed files)",
                self.failed,
            )
            if self.on_failure is not None:
                self.on_failure(self.failed)
            return self.failed
        for name, collection in list(self._collections.items()):
            lost = collection.store.file_problem() if collection.quarantine_reason is None else None
            if lost is not None:
                collection.quarantine_reason = f"its files were removed or replaced while serving ({lost})"
                log.critical("collection %r QUARANTINED: %s", name, collection.quarantine_reason)
        return None

    def maintain_once(self) -> bool:
        """Runs at most one due job per collection; False when nothing was due."""
        if self.check_data_dir() is not None:
            return False  # a snapshot now would recreate folders of the removed directory
        did = False
        for collection in list(self._collections.values()):
            if collection.quarantine_reason is not None:
                continue
            try:
                did = collection.maintain() or did
            except Exception:
                log.exception("maintenance of %s failed", collection.config.name)
        return did

    def _maintain_forever(self) -> None:
        faiss.omp_set_num_threads(self.options.omp_threads)
        while not self._stop.is_set():
            if not self.maintain_once():
                self._stop.wait(self.options.idle_s)

    def close(self, *, snapshot: bool = True) -> None:
        """Stops the upkeep thread, snapshots what changed (if asked) and releases the data dir."""
        self._stop.set()
        if self.options.collection.recall_monitor is not None:
            self.options.collection.recall_monitor.close()
        if self._worker is not None:
            self._worker.join()
        with self._mutex:
            collections = list(self._collections.values())
            self._collections.clear()
        snapshot = snapshot and self.failed is None
        for collection in collections:
            collection.close(snapshot=snapshot and collection.quarantine_reason is None)
        self._pool.shutdown(wait=True)
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
