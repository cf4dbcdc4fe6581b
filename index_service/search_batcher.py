"""Concurrent one-query searches of the same shape, run as one multi-query search.

Every Search call pays a fixed cost around its FAISS call: a hop to a request thread and
back, the collection and shard lookups, the read lock, the query checks, the selector and
search parameters, one ``index.search``. Under concurrent load most calls ask the same thing
of the same collection with one vector each; :class:`SearchBatcher` merges those into one
request with many query vectors (FAISS searches a batch of queries in one call) and splits
its answer back, query by query.

No timer: a call whose shape has fewer than ``parallel`` batches in flight goes at once, so
a lone caller never waits for company; calls that arrive while that many batches of their
shape run wait, and go together as the next one. Two calls share a batch only if their requests are equal in
every field but ``queries`` (collection, fingerprint, k, offset, filter, params, and any
field added later), and the merged request goes through the very same handler code as a
single one, so a batched call's hits are the ones it would get alone (tests/index/
test_search_batching.py compares them over gRPC). If a merged search fails, each of its
calls is run again on its own, so every caller gets its own answer or its own error
(naming its own ``queries[0]``).

Plain asyncio, no gRPC: ``run(request) -> response`` is given by the servicer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: Query vectors in one merged search at most (a request may hold up to MAX_QUERIES).
DEFAULT_MAX_BATCH = 64

Runner = Callable[[Any], Awaitable[Any]]


@dataclass
class _Shape:
    """Calls of one request shape: those waiting for the next batch, and whether one runs."""

    waiting: list[tuple[Any, asyncio.Future]] = field(default_factory=list)
    #: Batches of this shape running now (at most the batcher's ``parallel``).
    running: int = 0


@dataclass
class BatchStats:
    """Counters for tests and metrics: merged searches run and the calls they answered."""

    batches: int = 0
    calls: int = 0
    #: Merged searches that failed and were run again call by call.
    split: int = 0


class SearchBatcher:
    def __init__(self, max_batch: int = DEFAULT_MAX_BATCH, parallel: int = 2):
        if max_batch < 1 or parallel < 1:
            raise ValueError("max_batch and parallel must be at least 1")
        self.max_batch = max_batch
        #: Batches of one shape run at once at most: one FAISS call runs on one core (with
        #: --omp-threads 1), so one batch at a time would leave the other cores idle.
        self.parallel = parallel
        self._shapes: dict[bytes, _Shape] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stats = BatchStats()

    @staticmethod
    def batchable(request: Any) -> bool:
        """One query vector: the calls this batcher merges (others go as they are)."""
        return len(request.queries) == 1

    async def search(self, request: Any, run: Runner) -> Any:
        """``run(request)``'s answer for this request, possibly as part of a merged request."""
        key = _shape_key(request)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = _Shape()
        if shape.running < self.parallel and not shape.waiting:
            # Room and nobody queued: this call runs at once, in its own task (no hop).
            shape.running += 1
            self.stats.batches += 1
            self.stats.calls += 1
            try:
                return await run(request)
            finally:
                shape.running -= 1
                self._after_batch(key, shape, run)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        shape.waiting.append((request, future))
        return await future

    def _after_batch(self, key: bytes, shape: _Shape, run: Runner) -> None:
        """A batch ended: calls queued meanwhile get a task that runs them; an idle shape goes."""
        if shape.waiting and shape.running < self.parallel:
            shape.running += 1
            task = asyncio.ensure_future(self._drain(key, shape, run))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)
        elif not shape.running and not shape.waiting and self._shapes.get(key) is shape:
            del self._shapes[key]

    async def _drain(self, key: bytes, shape: _Shape, run: Runner) -> None:
        """Runs the shape's waiting calls, a batch at a time, until none is left."""
        try:
            while shape.waiting:
                batch, shape.waiting = shape.waiting[: self.max_batch], shape.waiting[self.max_batch :]
                batch = [(request, future) for request, future in batch if not future.done()]
                if batch:
                    await self._run_batch(batch, run)
        finally:
            shape.running -= 1
            if not shape.running:
                for _, future in shape.waiting:  # only left when this task itself was cancelled
                    future.cancel()
                shape.waiting = []
            self._after_batch(key, shape, run)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future]], run: Runner) -> None:
        self.stats.batches += 1
        self.stats.calls += len(batch)
        if len(batch) == 1:
            await _settle(batch[0][1], run(batch[0][0]))
            return
        merged = type(batch[0][0])()
        merged.CopyFrom(batch[0][0])
        for request, _ in batch[1:]:
            merged.queries.extend(request.queries)
        try:
            response = await run(merged)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.split += 1  # one bad call (or a limit on the merged size): each on its own
            await asyncio.gather(*(_settle(future, run(request)) for request, future in batch))
            return
        shell = type(response)()
        shell.CopyFrom(response)
        shell.ClearField("results")
        for i, (_, future) in enumerate(batch):
            if not future.done():
                part = type(response)()
                part.CopyFrom(shell)
                part.results.append(response.results[i])
                future.set_result(part)


def _shape_key(request: Any) -> bytes:
    """The request without its query vectors, serialized deterministically."""
    shape = type(request)()
    shape.CopyFrom(request)
    shape.ClearField("queries")
    return shape.SerializeToString(deterministic=True)


async def _settle(future: asyncio.Future, outcome: Awaitable[Any]) -> None:
    try:
        result = await outcome
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as error:
        if not future.done():
            future.set_exception(error)
        return
    if not future.done():
        future.set_result(result)
