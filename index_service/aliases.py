"""Aliases: names that point at a collection and switch atomically (zero-downtime reindex).

``<data-dir>/aliases.json`` holds ``{alias: {"collection": ..., "previous": ...}}`` and is
replaced whole (write, fsync, rename, fsync the folder), so a crash leaves the old table or
the new one. ``previous`` is where the alias pointed before its last switch, kept until that
collection is dropped: a request tagged with the previous model's fingerprint still reaches
it, so clients and encoders can move to a new model after the swap without one failed call.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import NotFoundError
from index_service.config import check_name
from index_service.snapshots import fsync_dir

ALIASES_FILE = "aliases.json"


@dataclass(frozen=True)
class Alias:
    alias: str
    collection: str
    previous: str = ""


class AliasTable:
    """The aliases of one data directory; every change is durable before it is visible."""

    def __init__(self, root: Path):
        self.path = root / ALIASES_FILE
        self._lock = threading.Lock()
        self._aliases: dict[str, Alias] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self._aliases = {
                name: Alias(name, entry["collection"], entry.get("previous", ""))
                for name, entry in data.items()
            }

    def get(self, name: str) -> Alias | None:
        return self._aliases.get(name)

    def all(self) -> list[Alias]:
        return [self._aliases[name] for name in sorted(self._aliases)]

    def pointing_at(self, collection: str) -> list[str]:
        """Aliases whose current target is ``collection``."""
        return sorted(a.alias for a in self._aliases.values() if a.collection == collection)

    def set(self, alias: str, collection: str) -> str:
        """Points ``alias`` at ``collection``; returns where it pointed before ("" if new)."""
        check_name(alias, "alias")
        with self._lock:
            old = self._aliases.get(alias)
            before = old.collection if old is not None else ""
            if before == collection:
                return before
            table = dict(self._aliases)
            table[alias] = Alias(alias, collection, before)
            self._save(table)
            return before

    def delete(self, alias: str, *, missing_ok: bool) -> bool:
        check_name(alias, "alias")
        with self._lock:
            if alias not in self._aliases:
                if missing_ok:
                    return False
                raise NotFoundError(f"no alias named {alias!r}", field="alias")
            table = dict(self._aliases)
            del table[alias]
            self._save(table)
            return True

    def forget(self, collection: str) -> None:
        """A dropped collection is no alias's previous target any more."""
        with self._lock:
            if not any(a.previous == collection for a in self._aliases.values()):
                return
            table = {
                name: Alias(a.alias, a.collection, "") if a.previous == collection else a
                for name, a in self._aliases.items()
            }
            self._save(table)

    def restore(self, aliases: list[Alias]) -> None:
        """Adds restored aliases (the caller checked their names are free)."""
        with self._lock:
            table = dict(self._aliases)
            table.update((a.alias, a) for a in aliases)
            self._save(table)

    def _save(self, table: dict[str, Alias]) -> None:
        data = {a.alias: {"collection": a.collection, "previous": a.previous} for a in table.values()}
        partial = self.path.with_suffix(".json.tmp")
        with open(partial, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.path)
        fsync_dir(self.path.parent)
        self._aliases = table
