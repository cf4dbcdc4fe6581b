"""Live recall: a sample of real searches is re-run exactly in the background and compared.

Benchmarks measure recall on their data; a deployment's recall depends on its own vectors,
filters and index settings. Each search of an approximate collection is sampled with
probability ``sample_rate``; a sampled search's queries, filter and hit ids go to a small
queue (full: the sample is dropped and counted, so a busy server never waits for it) and
one background thread, at the lowest CPU priority (``nice`` 19), re-runs it exactly
(:meth:`~index_service.collection.Collection.exact_candidates`) and records recall@k,
the fraction of the exact top k the search returned.

``nice`` alone does not bound the cost: an exact re-run of a 100k HNSW search costs ~50
searches, so a 1 % sample took 19 % of a busy 2-core server's throughput. A CPU budget
does: after a re-run that took ``t`` seconds the monitor takes no sample for
``t / cpu_budget - t`` seconds (counted as skipped), so it uses at most ``cpu_budget`` of
one core whatever the search rate; on a busy server the effective sample rate falls.

The last ``window`` samples per collection and index spec are averaged into
``clipsearch_index_recall`` (index_service/metrics.py); an average below ``threshold`` is
logged as a warning (once per crossing).

Flat collections are not sampled (exact by construction). An exact re-run costs what a
brute-force search costs: a masked scan in memory for HNSW, a read of the selected vectors
from the store for compressed kinds, so a large compressed collection wants a small rate.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from index_service.config import CollectionConfig
from index_service.filters import Filter
from index_service.kinds import IndexKind

log = logging.getLogger(__name__)


class Collection(Protocol):
    """What the monitor uses of :class:`~index_service.collection.Collection` (which imports it)."""

    config: CollectionConfig
    kind: IndexKind

    def exact_candidates(
        self, queries: Sequence[np.ndarray] | np.ndarray, width: int, *, filter_: Filter | None = None
    ) -> list[list[str]]: ...


@dataclass(frozen=True)
class _Job:
    collection: Collection
    queries: np.ndarray
    width: int
    filter_: Filter | None
    found: list[list[str]]


#: The share of one core the re-runs may use (``--recall-cpu-budget``).
DEFAULT_CPU_BUDGET = 0.02


class RecallMonitor:
    """One per server; thread-safe. ``sample_rate`` 0 turns it off; ``cpu_budget`` 1 never pauses."""

    def __init__(
        self,
        sample_rate: float,
        threshold: float,
        *,
        cpu_budget: float = DEFAULT_CPU_BUDGET,
        window: int = 200,
        queue_size: int = 4,
        chance: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0.0 < cpu_budget <= 1.0:
            raise ValueError(f"cpu_budget must be in (0, 1], not {cpu_budget}")
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.cpu_budget = cpu_budget
        self.window = window
        self._chance = chance
        self._clock = clock
        #: No sample before this time (the budget's pause after the last re-run).
        self._resume_at = 0.0
        self._closing = threading.Event()
        self._queue: queue.Queue[_Job | None] = queue.Queue(queue_size)
        self._mutex = threading.Lock()
        self._recall: dict[tuple[str, str], deque[float]] = {}
        self._below: set[tuple[str, str]] = set()
        #: Samples lost to a full queue, samples not taken during the budget's pauses.
        self.dropped = 0
        self.skipped = 0
        self.measured = 0
        self._thread: threading.Thread | None = None

    def wants(self, collection: Collection) -> bool:
        """Whether to sample this search (asked before its hit ids are listed for :meth:`offer`)."""
        if self.sample_rate <= 0 or collection.kind.exact or self._chance() >= self.sample_rate:
            return False
        if self._clock() < self._resume_at:
            self.skipped += 1  # a lost increment under a race only undercounts a statistic
            return False
        return True

    def offer(
        self,
        collection: Collection,
        queries: Sequence[np.ndarray] | np.ndarray,
        width: int,
        filter_: Filter | None,
        found: list[list[str]],
    ) -> None:
        """Queues a sampled search, its hits' ids per query (the best ``width``), for measuring."""
        job = _Job(collection, np.array(queries, dtype=np.float32), width, filter_, found)
        self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._mutex:
                self.dropped += 1

    def recall(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(collection, index spec) -> (mean recall@k of the window, samples in it)."""
        with self._mutex:
            return {key: (float(np.mean(v)), len(v)) for key, v in self._recall.items() if v}

    def forget(self, collection: str) -> None:
        """Drops a collection's figures (it was dropped)."""
        with self._mutex:
            for key in [key for key in self._recall if key[0] == collection]:
                del self._recall[key]
                self._below.discard(key)

    def drain(self) -> None:
        """Waits until every queued sample is measured (tests)."""
        self._queue.join()

    def close(self) -> None:
        """Stops the thread; samples still queued are not measured."""
        self._closing.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # -- the background thread ---------------------------------------------------------------

    def _start(self) -> None:
        with self._mutex:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recall-monitor", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:  # Linux: a thread is a task with its own nice value; searches keep the CPU first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        while True:
            job = self._queue.get()
            try:
                if job is None or self._closing.is_set():
                    return
                self._closing.wait(max(0.0, self._resume_at - self._clock()))  # a job queued before a pause
                if self._closing.is_set():
                    return
                started = self._clock()
                try:
                    self._measure(job)
                finally:
                    spent = self._clock() - started
                    self._resume_at = self._clock() + spent * (1.0 / self.cpu_budget - 1.0)
            except Exception as exc:  # the collection was dropped or closed meanwhile
                log.debug("recall sample skipped: %r", exc)
            finally:
                self._queue.task_done()

    def _measure(self, job: _Job) -> None:
        collection = job.collection
        exact = collection.exact_candidates(job.queries, job.width, filter_=job.filter_)
        values = [recall_at(truth, got) for truth, got in zip(exact, job.found, strict=True)]
        if not values:
            return
        key = (collection.config.name, collection.kind.spec)
        with self._mutex:
            window = self._recall.setdefault(key, deque(maxlen=self.window))
            window.extend(values)
            self.measured += len(values)
            mean = float(np.mean(window))
            crossed = mean < self.threshold and key not in self._below
            if crossed:
                self._below.add(key)
            elif mean >= self.threshold:
                self._below.discard(key)
        if crossed:
            log.warning(
                "%s (%s): recall@%d of sampled searches is %.3f over the last %d, below %.3f",
                key[0],
                key[1],
                job.width,
                mean,
                len(window),
                self.threshold,
            )


def recall_at(truth: list[str], found: list[str]) -> float:
    """The fraction of the exact hits ``truth`` among ``found`` (1 when there is none to find)."""
    if not truth:
        return 1.0
    return len(set(truth) & set(found)) / len(truth)
