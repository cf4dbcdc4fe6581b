"""Shared pieces of the reliability tests: short/long sizing, the crash-test machinery, figures.

``RELIABILITY_LONG=1`` switches every test to its long size (docs/reliability.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LONG = os.environ.get("RELIABILITY_LONG", "") not in ("", "0")
FIGURES_FILE = os.environ.get("RELIABILITY_FIGURES", "")


def size(short, long):
    """The short figure inside `make test`, the long one with RELIABILITY_LONG=1."""
    return long if LONG else short


def report(test: str, **figures) -> None:
    """Prints a test's figures (run pytest with -s to see them); appends them to $RELIABILITY_FIGURES."""
    line = {"test": test, "mode": "long" if LONG else "short", **figures}
    print(f"\nFIGURES {json.dumps(line)}")
    if FIGURES_FILE:
        with open(FIGURES_FILE, "a") as out:
            out.write(json.dumps(line) + "\n")


def crash_machinery():
    """scripts/index_crash_test.py as a module: start_server, wait_serving, free_port, verify, Ledger."""
    name = "index_crash_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "index_crash_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(np.float32)


def start_service(service: str, *flags: str, log_dir: Path, timeout_s: float = 120):
    """`clipsearch serve SERVICE FLAGS` as a subprocess on a free port: (process, address) once SERVING.

    Unlike benchmarks/_servers.serve, the caller owns the process: these tests signal and measure it.
    """
    import subprocess

    from clipsearch.health import wait_until_serving

    port = crash_machinery().free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{service}-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clipsearch.apps.cli", "serve", service, "--port", str(port), *flags],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    address = f"127.0.0.1:{port}"
    try:
        wait_until_serving(address, timeout_s=timeout_s)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, address


def kill_while_writing(process, write, kill_after_s: float) -> None:
    """Runs ``write(stop)`` in a thread, kill -9s ``process`` after ``kill_after_s``, then stops
    the writer and checks it did not hang on the dead server."""
    import signal
    import threading
    import time

    stop = threading.Event()
    writer = threading.Thread(target=write, args=(stop,))
    writer.start()
    time.sleep(kill_after_s)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stop.set()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the writer hung after the server died"


def stop_process(process) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


TINY_ENCODER = ("--model", "clipsearch-tiny", "--pretrained", "random")
