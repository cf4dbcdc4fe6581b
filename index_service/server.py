"""Runs the index service: ``create_server`` for tests and embedding, ``run`` for the CLI.

The server binds and answers health checks (NOT_SERVING) at once, then loads and recovers
every collection off the event loop, then turns SERVING. Stopping drains in-flight calls,
snapshots what changed since the last snapshot (so the next start replays little) and
releases the data directory.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import faiss

from clipsearch.server.observability import configure_logging
from clipsearch.server.server import ManagedServer, ServerOptions, ServiceBinding, run_until_signalled
from clipsearch.v1 import index_pb2_grpc
from index_service.collection import CollectionOptions
from index_service.engine import CollectionLoadError, DataDirLockedError, Engine, EngineOptions
from index_service.metrics import IndexMetrics
from index_service.servicer import IndexServicer
from index_service.settings import IndexSettings

log = logging.getLogger(__name__)

SERVICE_NAME = "clipsearch.v1.IndexService"


class IndexServer(ManagedServer):
    """A ManagedServer that owns the engine and closes it after the last call has drained."""

    def __init__(self, settings: IndexSettings, servicer: IndexServicer, executor: ThreadPoolExecutor):
        options = ServerOptions(
            host=settings.host,
            port=settings.port,
            max_message_bytes=settings.max_message_bytes,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            reflection=not settings.no_reflection,
            grace_s=settings.grace_s,
            **settings.server_options(),
        )
        binding = ServiceBinding(index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, SERVICE_NAME)
        super().__init__(options, [binding])
        self.settings = settings
        self.servicer = servicer
        self.executor = executor
        servicer.metrics = IndexMetrics(self.metrics_registry, lambda: servicer.engine)

    @property
    def engine(self) -> Engine | None:
        return self.servicer.engine

    async def load(self) -> None:
        """Opens (and recovers) every collection, then reports SERVING."""
        loop = asyncio.get_running_loop()
        self.servicer.engine = await loop.run_in_executor(
            self.executor, Engine, engine_options(self.settings)
        )
        await self.set_serving()

    async def stop(self, grace_s: float | None = None) -> None:
        await super().stop(grace_s)
        engine, self.servicer.engine = self.servicer.engine, None
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, engine.close)
        self.executor.shutdown(wait=False)


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
        ),
    )


async def create_server(settings: IndexSettings) -> ManagedServer:
    """A started server whose health is SERVING once every collection is loaded."""
    faiss.omp_set_num_threads(settings.omp_threads)
    executor = ThreadPoolExecutor(
        settings.request_threads,
        thread_name_prefix="index-request",
        initializer=faiss.omp_set_num_threads,
        initargs=(settings.omp_threads,),
    )
    server = IndexServer(settings, IndexServicer(executor), executor)
    await server.start()
    try:
        await server.load()
    except BaseException:
        await server.stop(0)
        raise
    return server


def run(settings: IndexSettings) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(settings.log_format, settings.log_level)

    async def serve() -> None:
        server = await create_server(settings)
        log.info("index service ready on %s:%s (data in %s)", settings.host, server.port, settings.data_dir)
        await run_until_signalled(server)

    try:
        asyncio.run(serve())
    except (DataDirLockedError, CollectionLoadError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
