"""A dynamic batcher: items of concurrent callers, run together on one model thread.

Callers (coroutines on an asyncio loop) first :meth:`DynamicBatcher.admit` their items,
which fails at once with RESOURCE_EXHAUSTED when ``max_queue`` items are already waiting,
then :meth:`~DynamicBatcher.submit` them to a queue of their kind ("text", "image").
One worker thread owns the model: it takes the queue whose oldest item waited longest,
lets it fill up to ``max_batch_size`` or until that item has waited ``max_wait_ms`` (waiting
only while more admitted inputs are still being prepared, so a lone caller never waits
for nothing; under load, batches form while the model is busy anyway), drops
items whose caller's deadline passed or who went away, runs the rest as one batch, and
hands each caller its results in order. ``max_batch_size=1`` turns batching off.

Bulk work (:meth:`DynamicBatcher.admit_waiting`: EmbedStream chunks) yields to interactive
calls (:meth:`~DynamicBatcher.admit`): it may hold at most half of ``max_queue``, so an
interactive call always finds room the streams cannot take, and the model thread serves
interactive items first, filling a batch's free places with bulk ones. A bulk item that
waited :attr:`BatchPolicy.bulk_max_wait_ms` goes first, so streams still progress (at a
share of about ``max_batch_size`` items per that wait) when interactive calls keep the
model busy. Measured before this: 20 streams took 72-84% of the model's work and 200
unary callers fell from ~500 to ~120-230 calls/s.

Nothing here knows gRPC or torch; ``runner(kind, payloads) -> results`` does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clipsearch.errors import (
    ClipsearchError,
    DeadlineExceededError,
    InternalError,
    ResourceExhaustedError,
    UnavailableError,
)

log = logging.getLogger(__name__)

Runner = Callable[[str, list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    #: How long the first item of a batch waits for company, milliseconds (the flag's unit).
    max_wait_ms: float = 5.0
    #: Items admitted and not yet taken by the model, at most.
    max_queue: int = 1024
    #: A bulk (stream) item that waited this long goes before interactive ones, milliseconds.
    bulk_max_wait_ms: float = 1000.0

    @property
    def bulk_queue(self) -> int:
        """Bulk items admitted at most (half the queue: the other half is the interactive calls')."""
        return max(1, self.max_queue // 2)


class BatchObserver(Protocol):
    """What the batcher reports (see encoder_service.metrics)."""

    def queue_depth(self, kind: str, depth: int) -> None: ...
    def batch(self, kind: str, size: int, queue_waits_s: Sequence[float], model_s: float) -> None: ...
    def dropped(self, kind: str, reason: str, count: int) -> None: ...
    def rejected(self, count: int) -> None: ...


class _Job:
    """One caller's items of one kind; resolved on the caller's loop."""

    __slots__ = ("deadline", "done", "future", "loop", "remaining", "results")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, deadline: float | None):
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.deadline = deadline
        #: Set (under the batcher's lock) once the job's outcome is decided or it was abandoned.
        self.done = False


class _Entry:
    __slots__ = ("bulk", "enqueued", "index", "job", "payload")

    def __init__(self, job: _Job, index: int, payload: Any, enqueued: float, bulk: bool = False):
        self.job = job
        self.index = index
        self.payload = payload
        self.enqueued = enqueued
        self.bulk = bulk


class Admission:
    """Room for ``size`` items in the queue, held from admission until submitted or released."""

    def __init__(self, batcher: DynamicBatcher, size: int, *, bulk: bool = False):
        self._batcher = batcher
        self.remaining = size
        #: Admitted by admit_waiting (a stream): queued behind interactive items.
        self.bulk = bulk

    def release(self) -> None:
        """Gives back whatever was not submitted (items that failed to decode, a cancelled call)."""
        if self.remaining:
            self._batcher._release(self.remaining, bulk=self.bulk)
            self.remaining = 0

    def release_beyond(self, keep: int) -> None:
        """Gives back all but ``keep`` items now (some inputs failed before submission)."""
        extra = self.remaining - keep
        if extra > 0:
            self._batcher._release(extra, bulk=self.bulk)
            self.remaining = keep

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DynamicBatcher:
    def __init__(
        self,
        runner: Runner,
        policy: BatchPolicy,
        *,
        kinds: Iterable[str] = ("text", "image"),
        observer: BatchObserver | None = None,
        name: str = "model",
    ):
        self._runner = runner
        self.policy = policy
        self._observer = observer
        self._cond = threading.Condition()
        self._queues: dict[str, deque[_Entry]] = {kind: deque() for kind in kinds}
        #: Bulk (stream) items, apart: the model thread takes them after the interactive ones.
        self._bulk: dict[str, deque[_Entry]] = {kind: deque() for kind in kinds}
        self._admitted = 0
        #: Of ``_admitted``, the bulk items (at most ``policy.bulk_queue``).
        self._bulk_admitted = 0
        self._closed = False
        self._batch_s = 0.0  # moving average of one batch's model time, for retry hints
        self._capacity_waiters: list[asyncio.Future] = []
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    # -- caller side (asyncio loop) -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def admitted(self) -> int:
        """Items admitted and not yet taken by the model (decoding or queued)."""
        return self._admitted

    def queue_depth(self, kind: str) -> int:
        return len(self._queues[kind]) + len(self._bulk[kind])

    def admit(self, size: int) -> Admission:
        """Reserves room for ``size`` items or raises ResourceExhaustedError at once."""
        with self._cond:
            self._check_open()
            if self._admitted + size > self.policy.max_queue:
                retry = self._retry_after_s()
                if self._observer:
                    self._observer.rejected(size)
                raise ResourceExhaustedError(
                    f"encoder queue is full ({self._admitted} of {self.policy.max_queue} inputs waiting, "
                    f"{size} more asked); retry after {retry:.2f}s",
                    retry_after_s=retry,
                )
            self._admitted += size
        return Admission(self, size)

    async def admit_waiting(self, size: int) -> Admission:
        """Like :meth:`admit` but waits for room instead of failing (flow-controlled streams)."""
        if size > self.policy.max_queue:
            raise ValueError(f"{size} items can never fit a queue of {self.policy.max_queue}")
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                self._check_open()
                # Bulk work takes room only within its half of the queue (a chunk larger than
                # that goes alone, so it is never stuck), never the room interactive calls need.
                bulk_fits = self._bulk_admitted == 0 or self._bulk_admitted + size <= self.policy.bulk_queue
                if bulk_fits and self._admitted + size <= self.policy.max_queue:
                    self._admitted += size
                    self._bulk_admitted += size
                    return Admission(self, size, bulk=True)
                waiter = loop.create_future()
                self._capacity_waiters.append(waiter)
            # Room frees when the worker takes a batch; the timeout only guards a lost wake-up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout=1.0)

    async def submit(
        self, kind: str, payloads: Sequence[Any], admission: Admission, *, deadline: float | None = None
    ) -> list[Any]:
        """Queues admitted items and returns their results in order.

        ``deadline`` is ``time.monotonic()`` based; items still queued after it are dropped
        and the call raises DeadlineExceededError. Cancelling the awaiting task abandons
        the items that have not reached the model yet.
        """
        if not payloads:
            return []
        if len(payloads) > admission.remaining:
            raise ValueError(f"{len(payloads)} items submitted on an admission of {admission.remaining}")
        job = _Job(asyncio.get_running_loop(), len(payloads), deadline)
        now = time.monotonic()
        bulk = admission.bulk
        queue = self._bulk[kind] if bulk else self._queues[kind]
        with self._cond:
            self._check_open()
            admission.remaining -= len(payloads)
            queue.extend(_Entry(job, i, payload, now, bulk) for i, payload in enumerate(payloads))
            depth = len(self._queues[kind]) + len(self._bulk[kind])
            self._cond.notify()
        if self._observer:
            self._observer.queue_depth(kind, depth)
        try:
            return await job.future
        except asyncio.CancelledError:
            with self._cond:
                job.done = True
            raise

    def close(self, timeout_s: float = 30.0) -> None:
        """Fails what is still queued with UNAVAILABLE and stops the worker."""
        with self._cond:
            self._closed = True
            queues = [*self._queues.values(), *self._bulk.values()]
            abandoned = [entry for queue in queues for entry in queue]
            for queue in queues:
                queue.clear()
            self._cond.notify_all()
            waiters, self._capacity_waiters = self._capacity_waiters, []
        for job in {id(e.job): e.job for e in abandoned}.values():
            self._fail(job, UnavailableError("the encoder is shutting down", retry_after_s=1.0))
        for waiter in waiters:
            _call_soon(waiter.get_loop(), _wake, waiter)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the encoder is shutting down", retry_after_s=1.0)

    def _release(self, size: int, *, bulk: bool = False) -> None:
        with self._cond:
            self._admitted -= size
            if bulk:
                self._bulk_admitted -= size
            self._cond.notify()  # a batch may have been waiting for these
            waiters, self._capacity_waiters = self._capacity_waiters, []
        for waiter in waiters:
            _call_soon(waiter.get_loop(), _wake, waiter)

    def _retry_after_s(self) -> float:
        batches_ahead = self._admitted / self.policy.max_batch_size + 1
        return min(10.0, max(0.05, batches_ahead * (self._batch_s or 0.05)))

    # -- the model thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = self._next_batch()
                if taken is None:
                    return
                kind, batch, expired, abandoned = taken
                depth = len(self._queues[kind]) + len(self._bulk[kind])
                waiters, self._capacity_waiters = self._capacity_waiters, []
            for waiter in waiters:
                _call_soon(waiter.get_loop(), _wake, waiter)
            if self._observer:
                self._observer.queue_depth(kind, depth)
            if expired:
                for job in {id(e.job): e.job for e in expired}.values():
                    self._fail(job, DeadlineExceededError("deadline passed while queued for the model"))
                if self._observer:
                    self._observer.dropped(kind, "deadline", len(expired))
            if abandoned and self._observer:
                self._observer.dropped(kind, "abandoned", abandoned)
            if batch:
                self._run(kind, batch)

    def _next_batch(self) -> tuple[str, list[_Entry], list[_Entry], int] | None:
        """Waits (lock held) for a batch.

        Returns (kind, entries to run, entries dropped for their deadline, number of entries
        dropped because their caller went away), or None once closed and empty. The kind is
        the one whose oldest interactive item waited longest (a bulk item once it waited
        ``bulk_max_wait_ms``, or when no interactive item waits); interactive items fill
        the batch first, then bulk ones (bulk first when a starving bulk item chose it).
        """
        max_size = self.policy.max_batch_size
        abandoned = 0
        while True:
            heads: dict[str, float] = {}
            bulk_heads: dict[str, float] = {}
            for kind in self._queues:
                for queue, found in ((self._queues[kind], heads), (self._bulk[kind], bulk_heads)):
                    while queue and queue[0].job.done:  # callers that went away or already failed
                        self._forget(queue.popleft())
                        abandoned += 1
                    if queue:
                        found[kind] = queue[0].enqueued
            if not heads and not bulk_heads:
                if self._closed:
                    return None
                self._cond.wait()
                continue
            now = time.monotonic()
            starving = {k: t for k, t in bulk_heads.items() if now - t >= self.policy.bulk_max_wait_ms / 1000}
            chosen = starving or heads or bulk_heads
            kind = min(chosen, key=chosen.__getitem__)
            order: tuple[deque[_Entry], ...]
            if kind in starving:
                order = (self._bulk[kind], self._queues[kind])
            elif kind in heads:
                order = (self._queues[kind],)  # interactive items only: bulk work would slow them
            else:
                interactive_queued = sum(len(q) for q in self._queues.values())
                if self._admitted - self._bulk_admitted > interactive_queued and not self._closed:
                    # Interactive inputs are being decoded: they go first; bulk waits for them.
                    self._cond.wait(max(self.policy.max_wait_ms / 1000.0, 0.001))
                    continue
                order = (self._bulk[kind],)
            waiting = sum(len(q) for q in order)
            wait = chosen[kind] + self.policy.max_wait_ms / 1000.0 - now
            # Wait for company only if some is on its way: inputs admitted but still being
            # decoded or tokenized. A lone caller is never held back for nothing.
            queued = sum(len(q) for q in self._queues.values()) + sum(len(q) for q in self._bulk.values())
            incoming = self._admitted - queued
            if waiting < max_size and wait > 0 and incoming > 0 and not self._closed:
                self._cond.wait(wait)
                continue
            batch: list[_Entry] = []
            expired: list[_Entry] = []
            for queue in order:
                while queue and len(batch) < max_size:
                    entry = queue.popleft()
                    self._forget(entry)
                    job = entry.job
                    if job.deadline is not None and job.deadline <= now and not job.done:
                        job.done = True
                    if job.done:
                        if job.deadline is not None and job.deadline <= now:
                            expired.append(entry)
                        else:
                            abandoned += 1
                        continue
                    batch.append(entry)
            return kind, batch, expired, abandoned

    def _forget(self, entry: _Entry) -> None:
        """An entry leaves the queue (to the model, or dropped): its room is free again."""
        self._admitted -= 1
        if entry.bulk:
            self._bulk_admitted -= 1

    def _run(self, kind: str, batch: list[_Entry]) -> None:
        started = time.monotonic()
        try:
            results = self._runner(kind, [entry.payload for entry in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"runner returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            log.exception("model batch of %d %s items failed", len(batch), kind)
            error = exc if isinstance(exc, ClipsearchError) else InternalError("model failure")
            for job in {id(e.job): e.job for e in batch}.values():
                self._fail(job, error)
            return
        finally:
            elapsed = time.monotonic() - started
            self._batch_s = elapsed if not self._batch_s else 0.8 * self._batch_s + 0.2 * elapsed
            if self._observer:
                self._observer.batch(kind, len(batch), [started - e.enqueued for e in batch], elapsed)
        finished: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for entry, result in zip(batch, results, strict=True):
            job = entry.job
            job.results[entry.index] = result
            job.remaining -= 1
            if job.remaining == 0:
                finished.setdefault(job.loop, []).append(job)
        with self._cond:
            for jobs in finished.values():
                for job in jobs:
                    job.done = True
        # One wake-up of each caller loop for the whole batch, not one per call (32 per batch
        # at 32 callers: each costs the loop a self-pipe write, a read and a callback).
        for loop, jobs in finished.items():
            _call_soon(loop, _resolve_all, jobs)

    def _fail(self, job: _Job, error: BaseException) -> None:
        with self._cond:
            job.done = True
        _call_soon(job.loop, _reject, job.future, error)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
        pass


def _resolve_all(jobs: list[_Job]) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_result(job.results)


def _reject(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
