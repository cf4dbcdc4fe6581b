"""Runs the search page: ``clipsearch ui``, through the same ``serve`` as every gRPC server.

:class:`PageServer` binds its socket itself (so a port in use is one sentence, like every
server's), then runs uvicorn on it until stopped; signals are ``serve``'s, not uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from clipsearch.apps.ui.app import create_app
from clipsearch.apps.ui.page import SearchPage
from clipsearch.apps.ui.settings import UISettings
from clipsearch.server.serve import StartError, bind_error, serve

log = logging.getLogger("clipsearch.apps.ui")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals belong to :func:`~clipsearch.server.serve.serve`, which stops the page."""
        yield


class PageServer:
    """The page's HTTP server on the running event loop."""

    def __init__(self, settings: UISettings, page: SearchPage | None = None):
        self.settings = settings
        self._app = create_app(settings, page)
        config = uvicorn.Config(
            self._app,
            log_level=settings.log_level.lower(),
            access_log=settings.log_level == "DEBUG",
            server_header=False,
            timeout_graceful_shutdown=max(1, round(settings.grace_s)),
            log_config=None,  # our logging (serve configures it)
        )
        self._uvicorn = _Uvicorn(config)
        self._task: asyncio.Task | None = None
        self.port: int | None = None

    @property
    def page(self) -> SearchPage:
        return self._app.state.page

    async def start(self) -> PageServer:
        settings = self.settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError:
            sock.close()
            raise bind_error(
                settings.host, settings.port, "--port", UISettings.env_var("--port"), what="page"
            ) from None
        self.port = sock.getsockname()[1]
        self._task = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise StartError("the page's HTTP server stopped while starting (see the log)")
            await asyncio.sleep(0.02)
        page = self.page
        log.info(
            "page at http://%s:%d/ searching collection %r through encoder %s and index %s",
            settings.host,
            self.port,
            settings.collection,
            page.addresses["encoder"],
            page.addresses["index"],
        )
        return self

    async def stop(self, grace_s: float | None = None, *, exiting: bool = False) -> None:
        self._uvicorn.should_exit = True
        if self._task is not None:
            await self._task

    async def wait_for_termination(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)


def run(settings: UISettings) -> int:
    return serve("search page", settings, lambda: PageServer(settings).start())
