"""Runs the encoder service: ``create_server`` for tests and embedding, ``run`` for the CLI.

The server binds and answers health checks (NOT_SERVING) at once, loads the model and
warms it up off the event loop, then turns SERVING. Stopping drains in-flight calls,
then stops the model thread and the decode pool.
"""

from __future__ import annotations

import asyncio
import logging

from clipsearch.server.observability import configure_logging
from clipsearch.server.server import ManagedServer, ServerOptions, ServiceBinding, run_until_signalled
from encoder_service.core import EncoderCore
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import ModelLoadError
from encoder_service.servicer import SERVICE_NAME, EncoderServicer, add_to_server
from encoder_service.settings import EncoderSettings

log = logging.getLogger(__name__)


class EncoderServer(ManagedServer):
    """A ManagedServer that owns the encoder core; ``core`` and ``metrics`` are for tests and ops."""

    def __init__(self, settings: EncoderSettings):
        options = ServerOptions(
            host=settings.host,
            port=settings.port,
            max_message_bytes=settings.max_message_bytes,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            reflection=not settings.no_reflection,
            grace_s=settings.grace_s,
            **settings.server_options(),
        )
        self.servicer = EncoderServicer(None, stream_window=settings.stream_window)
        super().__init__(options, [ServiceBinding(add_to_server, self.servicer, SERVICE_NAME)])
        self.settings = settings
        #: This server's encoder counters, in its own Prometheus registry.
        self.metrics = EncoderMetrics(self.metrics_registry)
        self.core: EncoderCore | None = None

    async def load(self) -> None:
        """Loads and warms up the model off the loop, starts the batcher, reports SERVING."""
        core = await asyncio.to_thread(EncoderCore.from_settings, self.settings, self.metrics)
        await core.start()
        self.core = core
        self.servicer.core = core
        await self.set_serving()
        log.info("encoder ready: %s", core.identity)

    async def stop(self, grace_s: float | None = None) -> None:
        await super().stop(grace_s)
        if self.core is not None:
            await asyncio.to_thread(self.core.close)


async def create_server(settings: EncoderSettings) -> ManagedServer:
    """A started server whose health is SERVING once the model is loaded and warmed up."""
    server = EncoderServer(settings)
    await server.start()
    try:
        await server.load()
    except BaseException:
        await server.stop(0)
        raise
    return server


def run(settings: EncoderSettings) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(settings.log_format, settings.log_level)

    async def serve() -> None:
        server = await create_server(settings)
        log.info("encoder service listening on %s:%s", settings.host, server.port)
        await run_until_signalled(server)

    try:
        asyncio.run(serve())
    except (ModelLoadError, OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
