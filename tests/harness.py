"""Runs real clipsearch gRPC servers on loopback for tests.

Each server runs on its own asyncio loop in a background thread, bound to
127.0.0.1 on a free port, and is reached over real gRPC like any client would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

from clipsearch.server.serve import Server


class ServerThread:
    """Starts ``await factory()`` (a started Server) in a thread; ``stop()`` drains it."""

    def __init__(self, factory: Callable[[], Awaitable[Server]], name: str = "server"):
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self.server: Server | None = None

    def start(self, timeout: float = 120.0) -> ServerThread:
        self._thread.start()
        self.server = self.run(self._factory(), timeout=timeout)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coro: Awaitable, timeout: float = 60.0):
        """Runs a coroutine on the server's loop and returns its result."""
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def stop(self, grace_s: float = 1.0) -> None:
        if self.server is not None:
            self.run(self.server.stop(grace_s))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
