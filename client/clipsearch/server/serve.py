"""``serve``: how every clipsearch server runs as a process, from start to exit code.

The encoder, the index, the gateway and the search page all run through :func:`serve`:
logging as the settings say, the server started by its factory, SIGTERM or SIGINT awaited
(from the start on: a signal while loading stops the load), the server stopped (health
NOT_SERVING at once, in-flight work drained for ``grace_s``, then its cleanups), and an
exit code: 0 for a stop that was asked for, within ``grace_s`` + :data:`EXIT_MARGIN_S`.
A server that cannot start raises :class:`StartError`, whose message is one sentence
saying why and what to change; it is logged as ``cannot start: ...`` and the process
exits 1. Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from clipsearch.server.logs import configure_logging

log = logging.getLogger("clipsearch.server")


class StartError(Exception):
    """The server cannot start; the message says why and what to change, in one sentence."""


class Server(Protocol):
    """What :func:`serve` needs of a started server (ManagedServer, the page's PageServer)."""

    port: int | None

    async def stop(self, grace_s: float | None = None, *, exiting: bool = False) -> None:
        """Drains and closes the server; ``exiting``: the process ends right after (see ManagedServer)."""

    async def wait_for_termination(self) -> None: ...


def bind_error(host: str, port: int, flag: str, env: str | None, *, what: str = "server") -> StartError:
    """The one sentence for a port that cannot be bound, naming how to change it."""
    change = f"{flag}" + (f" or ${env}" if env else "")
    return StartError(
        f"the {what} cannot listen on {host}:{port}: the port is in use by another program "
        f"(or the address is not this machine's); choose another with {change}"
    )


#: A stopping server exits at the latest this long after its grace period: the stop itself takes
#: at most ``grace_s`` + 1 s (clipsearch.server.server.CLEANUP_FLOOR_S); this bounds the rest
#: (threads still busy, interpreter teardown). Pods need terminationGracePeriodSeconds beyond it.
EXIT_MARGIN_S = 2.0


def serve(
    name: str, settings: Any, start: Callable[[], Awaitable[Server]], *, log_format: str | None = None
) -> int:
    """Runs ``await start()`` until SIGTERM or SIGINT; returns the process exit code.

    A signal during the start stops it too (exit 0: it was asked to stop, whatever the start
    was doing). Once signalled, the process exits within ``settings.grace_s`` +
    :data:`EXIT_MARGIN_S` whatever happens: a stop still busy then is cut short (logged, exit 1).
    """
    configure_logging(log_format or settings.log_format, settings.log_level)
    grace_s = float(getattr(settings, "grace_s", 10.0))

    async def main() -> None:
        signalled = _on_signal(lambda: _arm_backstop(name, grace_s))
        starting = asyncio.ensure_future(start())
        waiting = asyncio.ensure_future(signalled.wait())
        await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("signal received while the %s was starting: stopping", name)
            starting.cancel()
        try:
            server = await starting
        except (asyncio.CancelledError, StartError):
            if not signalled.is_set():
                raise
            log.info("%s stopped before it had started", name)
            _exit_process(0)  # a load cut short may still run in a thread: nothing of it is needed
        finally:
            waiting.cancel()
        log.info("%s listening on %s:%s", name, settings.host, server.port)
        try:
            await _until_signalled(server, signalled)
        finally:
            await server.stop(exiting=signalled.is_set())
        log.info("%s stopped", name)
        if signalled.is_set():
            _exit_process(0)

    try:
        asyncio.run(main())
    except StartError as exc:
        log.error("cannot start the %s: %s", name, exc)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return 130
    return 0


def _on_signal(first: Callable[[], None]) -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT (which also calls ``first``); a second one is the
    default action again (terminate; Ctrl-C raises KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def handle() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        first()
        signalled.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle)
    return signalled


def _exit_process(code: int) -> None:
    """Ends the process now that the server has stopped and its cleanups ran.

    Without the interpreter's teardown, which would wait for every thread still busy (a
    request thread in a long search, a model load cut short) and run library exit hooks:
    the stop's time bound is what the process takes. Everything that must be closed (stores,
    the model, the listeners' calls) was closed by the stop.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _arm_backstop(name: str, grace_s: float) -> None:
    """From the signal on, the process ends within ``grace_s`` + EXIT_MARGIN_S, stuck thread or not."""

    def force_exit() -> None:
        log.error(
            "the %s was still stopping %.1f s after the signal (--grace-s %g + %g s): exiting now",
            name,
            grace_s + EXIT_MARGIN_S,
            grace_s,
            EXIT_MARGIN_S,
        )
        _exit_process(1)

    timer = threading.Timer(grace_s + EXIT_MARGIN_S, force_exit)
    timer.daemon = True
    timer.start()


async def _until_signalled(server: Server, signalled: asyncio.Event) -> None:
    """Returns once signalled, or when the server ends by itself."""
    # Shielded: cancelling grpc.aio's wait_for_termination cancels the server's own shutdown future.
    ended: asyncio.Future[None] = asyncio.shield(asyncio.ensure_future(server.wait_for_termination()))
    waiters: set[asyncio.Future[Any]] = {ended, asyncio.ensure_future(signalled.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
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
