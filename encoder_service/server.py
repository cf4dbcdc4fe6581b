"""The encoder server: ``create_server`` for tests and embedding, ``run`` for the CLI.

The server binds and answers health checks (NOT_SERVING) at once, loads the model and
warms it up off the event loop, then turns SERVING. Stopping drains in-flight calls,
then stops the model thread and the decode pool (a cleanup of the server).
"""

from __future__ import annotations

import asyncio
import logging
import time

from clipsearch.server.serve import StartError, serve
from clipsearch.server.server import ManagedServer, ServiceBinding, options_from_settings
from encoder_service.core import EncoderCore
from encoder_service.factory import core_from_settings
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import ModelLoadError
from encoder_service.servicer import SERVICE_NAME, EncoderServicer, add_to_server
from encoder_service.settings import EncoderSettings

log = logging.getLogger(__name__)


class EncoderServer(ManagedServer):
    """A ManagedServer that owns the encoder core; ``core`` and ``metrics`` are for tests and ops."""

    def __init__(self, settings: EncoderSettings):
        self.servicer = EncoderServicer(
            None, stream_window=settings.stream_window, require_stream_acks=settings.require_stream_acks
        )
        super().__init__(
            options_from_settings(settings), [ServiceBinding(add_to_server, self.servicer, SERVICE_NAME)]
        )
        self.servicer.draining = self.draining
        self.settings = settings
        #: This server's encoder counters, in its own Prometheus registry.
        self.metrics = EncoderMetrics(self.metrics_registry)
        self.core: EncoderCore | None = None

    async def load(self) -> None:
        """Loads and warms up the model off the loop, starts the batcher, reports SERVING."""
        try:
            core = await asyncio.to_thread(core_from_settings, self.settings, self.metrics)
        except ModelLoadError as exc:
            raise StartError(str(exc)) from exc
        self.add_cleanup(lambda: asyncio.to_thread(core.close, timeout_s=self._cleanup_time_left()))
        await core.start()
        self.core = core
        self.servicer.core = core
        await self.set_serving()
        log.info("encoder ready: %s", core.identity)

    def _cleanup_time_left(self) -> float:
        deadline = self.stop_deadline
        return 30.0 if deadline is None else max(0.1, deadline - time.monotonic())


async def create_server(settings: EncoderSettings) -> EncoderServer:
    """A started server whose health is SERVING once the model is loaded and warmed up."""
    return await EncoderServer(settings).open()


def run(settings: EncoderSettings) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    return serve("encoder", settings, lambda: create_server(settings))
