"""Starts the real servers as subprocesses (`clipsearch serve ...`) for benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from clipsearch.health import wait_until_serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(service: str, *flags: str, log_dir: Path) -> Iterator[str]:
    """Runs `clipsearch serve SERVICE FLAGS` on a free port; yields its address once SERVING."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{service}-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.apps.cli", "serve", service, "--port", str(port), *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_until_serving(address, timeout_s=300)
        yield address
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
