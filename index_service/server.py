"""Runs the index service: ``create_server`` for tests and embedding, ``run`` for the CLI.

The server binds and answers health checks (NOT_SERVING) at once, then loads and recovers
every collection off the event loop, then turns SERVING. Stopping drains in-flight calls,
snapshots what changed since the last snapshot (so the next start replays little) and
releases the data directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import faiss

from clipsearch.server.serve import StartError, serve
from clipsearch.server.server import ManagedServer, ServiceBinding, options_from_settings
from clipsearch.v1 import index_pb2_grpc
from index_service.collection import CollectionOptions
from index_service.engine import DataDirLockedError, Engine, EngineOptions
from index_service.inline_search import InlinePolicy
from index_service.limits import IndexLimits
from index_service.metrics import IndexMetrics
from index_service.planner import PlannerPolicy
from index_service.recall_monitor import RecallMonitor
from index_service.search_batcher import SearchBatcher
from index_service.servicer import IndexServicer
from index_service.settings import IndexSettings

log = logging.getLogger(__name__)

SERVICE_NAME = "clipsearch.v1.IndexService"


class IndexServer(ManagedServer):
    """A ManagedServer that owns the engine and closes it after the last call has drained."""

    def __init__(self, settings: IndexSettings):
        self.executor = ThreadPoolExecutor(
            settings.request_threads,
            thread_name_prefix="index-request",
            initializer=faiss.omp_set_num_threads,
            initargs=(settings.omp_threads,),
        )
        self.servicer = IndexServicer(self.executor, InlinePolicy(settings.inline_search_ms / 1000))
        if settings.search_batch:
            parallel = settings.search_batch_parallel or max(1, os.cpu_count() or 1)
            self.servicer.search_batcher = SearchBatcher(settings.search_batch, parallel)
        binding = ServiceBinding(
            index_pb2_grpc.add_IndexServiceServicer_to_server, self.servicer, SERVICE_NAME
        )
        super().__init__(options_from_settings(settings), [binding])
        self.settings = settings
        self.servicer.metrics = IndexMetrics(self.metrics_registry, lambda: self.servicer.engine)
        self.add_cleanup(lambda: self.executor.shutdown(wait=False))

    @property
    def engine(self) -> Engine | None:
        return self.servicer.engine

    async def load(self) -> None:
        """Opens (and recovers) every collection, then reports SERVING."""
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(self.executor, Engine, engine_options(self.settings))
        except DataDirLockedError as exc:
            raise StartError(str(exc)) from exc
        self.servicer.engine = engine
        self.add_cleanup(self._close_engine)
        loop = asyncio.get_running_loop()

        def data_dir_lost(reason: str) -> None:  # index_service/datadir.py: NOT_SERVING until a restart
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.set_not_serving()))

        engine.on_failure = data_dir_lost
        await self.set_serving()

    async def _close_engine(self) -> None:
        engine, self.servicer.engine = self.servicer.engine, None
        if engine is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, close_within, engine, self.stop_deadline)


def close_within(engine: Engine, deadline: float | None) -> None:
    """Snapshots what changed while there is time (a start replays the rest from the store), then closes.

    A snapshot that fails (no space left on the disk) is skipped with a warning: the store
    holds every acknowledged write, so the stop still succeeds.
    """
    skipped = []
    for name, collection in engine.collections():
        if engine.failed is not None or collection.quarantine_reason is not None:
            continue
        if deadline is not None and time.monotonic() >= deadline:
            skipped.append(name)
            continue
        try:
            collection.snapshot_all()
        except OSError as exc:
            log.warning(
                "%s: no snapshot at shutdown (%s); the next start replays its writes from the store",
                name,
                exc.strerror or exc,
            )
    if skipped:
        log.warning(
            "no time left in the grace period to snapshot %s; the next start replays their writes "
            "from the store",
            ", ".join(skipped),
        )
    engine.close(snapshot=False)


def engine_options(settings: IndexSettings) -> EngineOptions:
    return EngineOptions(
        data_dir=settings.data_dir,
        search_threads=settings.search_threads,
        omp_threads=settings.omp_threads,
        collection=CollectionOptions(
            snapshot_min_ops=settings.snapshot_min_ops,
            snapshot_growth=settings.snapshot_growth,
            snapshot_interval_s=settings.snapshot_interval_s,
            rebuild_dead_ratio=settings.rebuild_dead_ratio,
            exact_fallback_max=settings.exact_fallback_max,
            planner=PlannerPolicy(
                exact_items=settings.plan_exact_items,
                exact_read_items=settings.plan_exact_read_items,
                exact_fraction=settings.plan_exact_fraction,
                ann_fraction=settings.plan_ann_fraction,
                oversample=settings.rerank_oversample,
            ),
            recall_monitor=RecallMonitor(
                settings.recall_sample_rate, settings.recall_threshold, cpu_budget=settings.recall_cpu_budget
            )
            if settings.recall_sample_rate > 0
            else None,
            limits=IndexLimits(
                max_batch_items=settings.max_batch_items,
                max_search_hits=settings.max_search_hits,
                max_fields=settings.max_fields,
                max_value_bytes=settings.max_value_bytes,
                max_list_values=settings.max_list_values,
                max_metadata_bytes=settings.max_metadata_bytes,
            ),
        ),
    )


async def create_server(settings: IndexSettings) -> IndexServer:
    """A started server whose health is SERVING once every collection is loaded."""
    faiss.omp_set_num_threads(settings.omp_threads)
    return await IndexServer(settings).open()


def run(settings: IndexSettings) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    return serve("index", settings, lambda: create_server(settings))
