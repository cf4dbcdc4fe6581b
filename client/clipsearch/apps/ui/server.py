"""Runs the search page with uvicorn: ``clipsearch ui``."""

from __future__ import annotations

import logging

from clipsearch.apps.ui.page import SearchPage
from clipsearch.apps.ui.settings import UISettings
from clipsearch.server.security import is_loopback

log = logging.getLogger("clipsearch.apps.ui")


def build_server(settings: UISettings, page: SearchPage | None = None):
    """A uvicorn server for the page (not started); tests run it in a thread on port 0."""
    try:
        import uvicorn

        from clipsearch.apps.ui.app import create_app
    except ImportError as error:
        raise SystemExit(
            f"error: the search page needs the 'ui' extra ({error.name or error} is missing): "
            "pip install 'clipsearch[ui]'"
        ) from None
    config = uvicorn.Config(
        create_app(settings, page),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",
        server_header=False,
    )
    return uvicorn.Server(config)


def run(settings: UISettings) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (is_loopback(settings.host) or settings.insecure):
        log.error(
            "refusing to serve the page on %s: it has no TLS or login of its own. Bind 127.0.0.1 behind a "
            "TLS-terminating proxy, or pass --insecure to accept the risk.",
            settings.host,
        )
        return 2
    server = build_server(settings)
    page = server.config.app.state.page
    log.info(
        "searching collection %r through encoder %s and index %s",
        settings.collection,
        page.addresses["encoder"],
        page.addresses["index"],
    )
    server.run()  # logs the page's address once it listens
    return 0 if server.started else 1
