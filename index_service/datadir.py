"""Noticing that the data directory was deleted or replaced under a running index.

SQLite keeps writing to a file that was unlinked while open: after ``rm -rf`` of the data
directory every write was still acknowledged, durable only in inodes that vanish when the
process exits. So the index compares what it opened with what the paths now hold: the
directory, its ``collections/`` folder and its ``LOCK`` file (:class:`DataDirWatch`, checked
before every write and by the upkeep thread), and each store file after every commit
(:meth:`index_service.store.Store.file_problem`). A write is acknowledged only while its
file is still the one on disk. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

Identity = tuple[int, int]


def identity(path: Path) -> Identity:
    """(device, inode) of ``path``; FileNotFoundError when nothing is there."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def problem_with(path: Path, opened: Identity) -> str | None:
    """What happened to ``path`` since it was ``opened`` (removed, replaced), or None."""
    try:
        now = identity(path)
    except FileNotFoundError:
        return f"{path} was removed"
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    return None if now == opened else f"{path} was replaced by another file"


class DataDirWatch:
    """The data directory as opened: :meth:`problem` says what changed, or None."""

    def __init__(self, root: Path):
        self.root = root
        self._opened = {path: identity(path) for path in (root, root / "collections", root / "LOCK")}

    def problem(self) -> str | None:
        for path, opened in self._opened.items():
            found = problem_with(path, opened)
            if found is not None:
                return found
        return None
