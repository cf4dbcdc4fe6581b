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
from dataclasses import dataclass, field
from pathlib import Path

import faiss

from clipsearch.errors import AlreadyExistsError, NotFoundError
from index_service import datadir, limits, quarantine, snapshots
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

    def collection(self, name: str) -> Collection:
        check_name(name)
        found = self._collections.get(name)
        if found is None:
            set_aside = self._quarantined.get(name)
            if set_aside is not None:
                raise set_aside.refusal()
            raise NotFoundError(f"no collection named {name!r}", field="collection")
        return found

    def describe(self, name: str) -> CollectionInfo:
        """A collection's settings and counts; a quarantined one's reason (it is not an error to ask)."""
        check_name(name)
        set_aside = self._quarantined.get(name)
        return set_aside.info() if set_aside is not None else self.collection(name).info()

    def list_collections(self) -> list[CollectionInfo]:
        infos = {name: c.info() for name, c in self._collections.items()}
        infos.update((name, q.info()) for name, q in self._quarantined.items())
        return [info for _, info in sorted(infos.items())]

    def quarantined(self) -> dict[str, str]:
        """name -> reason, of every collection that refuses calls (set aside at start, or since)."""
        found = {name: q.reason for name, q in self._quarantined.items()}
        found.update((n, c.quarantine_reason) for n, c in self._collections.items() if c.quarantine_reason)
        return found

    def collections(self) -> list[tuple[str, Collection]]:
        """(name, collection) pairs, sorted by name: a snapshot of the current set."""
        return sorted(self._collections.items())

    def drop_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        check_name(name)
        with self._mutex:
            collection = self._collections.pop(name, None)
            set_aside = self._quarantined.pop(name, None)
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
