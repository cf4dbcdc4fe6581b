"""A readers-writer lock that prefers writers (readers never block each other).

A thread inside :func:`no_wait` (the event loop's, running a search inline) must not wait:
where a read would wait, :class:`WouldBlock` is raised and the caller runs the work on a
worker thread instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class WouldBlock(Exception):
    """Work under :func:`no_wait` reached something that would wait (a lock, the disk).

    ``structural``: it would every time for this collection (several shards, a re-ranking
    index), not just now (a write holding a lock, a filter that chose an exact plan)."""

    def __init__(self, what: str, *, structural: bool = False):
        super().__init__(what)
        self.structural = structural


@contextmanager
def no_wait() -> Iterator[None]:
    """Within it, this thread's reads raise :class:`WouldBlock` instead of waiting."""
    _local.no_wait = True
    try:
        yield
    finally:
        _local.no_wait = False


def check_may_wait(what: str, *, structural: bool = False) -> None:
    """Raises :class:`WouldBlock` on a thread inside :func:`no_wait` (before ``what`` would wait)."""
    if getattr(_local, "no_wait", False):
        raise WouldBlock(what, structural=structural)


class RWLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            if self._writer or self._writers_waiting:
                check_may_wait("a shard's lock")
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
