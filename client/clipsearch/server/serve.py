"""``serve``: how every clipsearch server runs as a process, from start to exit code.

The encoder, the index, the gateway and the search page all run through :func:`serve`:
logging as the settings say, the server started by its factory, SIGTERM or SIGINT awaited,
the server stopped (health NOT_SERVING at once, in-flight work drained for ``grace_s``,
then its cleanups), and an exit code. A server that cannot start raises
:class:`StartError`, whose message is one sentence saying why and what to change; it is
logged as ``cannot start: ...`` and the process exits 1. Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from clipsearch.server.logs import configure_logging

log = logging.getLogger("clipsearch.server")


class StartError(Exception):
    """The server cannot start; the message says why and what to change, in one sentence."""


class Server(Protocol):
    """What :func:`serve` needs of a started server (ManagedServer, the page's PageServer)."""

    port: int | None

    async def stop(self, grace_s: float | None = None) -> None: ...

    async def wait_for_termination(self) -> None: ...


def bind_error(host: str, port: int, flag: str, env: str | None, *, what: str = "server") -> StartError:
    """The one sentence for a port that cannot be bound, naming how to change it."""
    change = f"{flag}" + (f" or ${env}" if env else "")
    return StartError(
        f"the {what} cannot listen on {host}:{port}: the port is in use by another program "
        f"(or the address is not this machine's); choose another with {change}"
    )


def serve(
    name: str, settings: Any, start: Callable[[], Awaitable[Server]], *, log_format: str | None = None
) -> int:
    """Runs ``await start()`` until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(log_format or settings.log_format, settings.log_level)

    async def main() -> None:
        server = await start()
        log.info("%s listening on %s:%s", name, settings.host, server.port)
        try:
            await _until_signalled(server)
        finally:
            await server.stop()
        log.info("%s stopped", name)

    try:
        asyncio.run(main())
    except StartError as exc:
        log.error("cannot start the %s: %s", name, exc)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return 130
    return 0


async def _until_signalled(server: Server) -> None:
    """Returns on SIGTERM or SIGINT, or when the server ends by itself."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    # Shielded: cancelling grpc.aio's wait_for_termination cancels the server's own shutdown future.
    ended: asyncio.Future[None] = asyncio.shield(asyncio.ensure_future(server.wait_for_termination()))
    waiters: set[asyncio.Future[Any]] = {ended, asyncio.ensure_future(signalled.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if signalled.is_set():
        log.info("signal received: draining")


def main(prog: str, settings_class: Any, run: str, argv: list[str] | None = None) -> int:
    """``python -m <service>``: parse the flags of ``settings_class``, then call ``run`` (module:function).

    ``run`` is imported only after the flags are parsed, so ``--help`` needs no server extra.
    """
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog=prog)
    settings_class.add_arguments(parser)
    settings = settings_class.from_args(parser.parse_args(argv))
    module, _, function = run.partition(":")
    return int(getattr(importlib.import_module(module), function)(settings))
