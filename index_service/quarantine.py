"""Collections set aside: one that cannot load does not keep the others from serving.

A collection whose files cannot be opened at start (damaged beyond what recovery repairs,
a spec this release refuses, written by a newer release...) is *quarantined*: its files
stay where they are, untouched; the server starts and serves every other collection;
ListCollections and DescribeCollection report it with the reason (``CollectionInfo.quarantine``);
every other call naming it is refused with FAILED_PRECONDITION saying why; the log says
so at ERROR with the path; ``clipsearch_index_quarantined_collections`` counts them.
Health stays SERVING: the server serves, and NOT_SERVING would take every collection out
of rotation for one. DropCollection removes a quarantined collection (and its files);
a restart tries to load it again (after the operator restored or repaired its files).

A collection already serving is quarantined when a committed write can be neither applied
to its shards nor undone (:meth:`~index_service.collection.Collection._recover`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import FailedPreconditionError
from index_service.config import CollectionConfig, CollectionInfo

log = logging.getLogger(__name__)


def refusal(name: str, reason: str) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"collection {name!r} is quarantined: {reason}. Its files are kept; see the index's log, then "
        "restore them and restart the index, or drop the collection",
        field="collection",
    )


@dataclass(frozen=True)
class Quarantined:
    """A collection that could not be loaded: where it is, why, and its settings if they could be read."""

    name: str
    path: Path
    #: What failed (a CollectionLoadError whose cause is the original error).
    error: BaseException
    config: CollectionConfig | None

    @property
    def reason(self) -> str:
        cause = self.error.__cause__ or self.error
        text = " ".join(str(cause).split()) or type(cause).__name__
        return f"it could not be loaded at start ({type(cause).__name__}: {text[:500]})"

    def info(self) -> CollectionInfo:
        config = self.config if self.config is not None else CollectionConfig(self.name, 0)
        return CollectionInfo(config, 0, (), quarantine=self.reason)

    def refusal(self) -> FailedPreconditionError:
        return refusal(self.name, self.reason)


def set_aside(name: str, path: Path, store_file: Path, error: BaseException) -> Quarantined:
    """The record of a collection that failed to load, logged loudly; its files are not touched."""
    found = Quarantined(name, path, error, _stored_config(store_file))
    log.error(
        "collection %r QUARANTINED: %s. Its files are kept in %s; the other collections serve. "
        "Restore or repair them and restart, or drop the collection",
        name,
        found.reason,
        path,
    )
    return found


def _stored_config(store_file: Path) -> CollectionConfig | None:
    """The collection's settings, read-only, when its store still yields them (else None)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return CollectionConfig.from_json(row[0]) if row else None
    except Exception:  # the store is what failed to load: settings unknown
        return None
