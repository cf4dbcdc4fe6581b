"""Processes of the peer benchmark: servers in their own session, and long-lived load workers.

Every process is started in a new session and, at the end, its whole process group is
signalled by that group's id (Triton's server and Python-backend stubs are children of the
PyTriton process), so nothing is left running, and nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def process(
    command: list[str], log: Path, *, stop_signal: int = signal.SIGTERM, env: dict | None = None
) -> Iterator[subprocess.Popen]:
    """Runs ``command`` (output to ``log``) until the block ends; then ``stop_signal``, then SIGKILL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=HERE, env=env
        )
        try:
            yield child
        finally:
            stop_group(child, stop_signal)


def stop_group(child: subprocess.Popen, first: int, grace_s: float = 30) -> None:
    if child.poll() is None:
        os.kill(child.pid, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # what the leader left behind (its group is its pid)
    child.wait()


def wait_for_log(child: subprocess.Popen, log: Path, text: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if child.poll() is not None:
            raise SystemExit(f"{child.args[:3]} exited with {child.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{child.args[:3]} not ready after {timeout_s:.0f} s; see {log}")
        time.sleep(0.2)


class Worker:
    """A ``_peer_worker.py`` process in a side's venv; ``ask`` sends one command, returns its answer."""

    def __init__(self, python: Path | str, target: str, config: dict, log: Path):
        self.target = target
        self.log = log.open("wb")
        self.child = subprocess.Popen(
            [str(python), "-u", str(HERE / "_peer_worker.py"), target, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
            cwd=HERE,
        )
        self._read()

    def ask(self, **command) -> object:
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps(command) + "\n")
        self.child.stdin.flush()
        return self._read()

    def _read(self) -> object:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            if line.startswith("@@peer "):
                return json.loads(line[len("@@peer ") :])
        raise SystemExit(f"worker {self.target} died (exit {self.child.wait()}); see {self.log.name}")

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            assert self.child.stdin is not None
            self.child.stdin.write('{"op": "quit"}\n')
            self.child.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=10)
        stop_group(self.child, signal.SIGTERM, grace_s=15)
        self.log.close()


@contextlib.contextmanager
def workers(*specs: tuple[Path | str, str, dict, Path]) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for spec in specs:
            started.append(Worker(*spec))
        yield started
    finally:
        for worker in started:
            worker.close()


def project_python() -> str:
    return sys.executable


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ..., utime [11], stime [12]
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def group_of_port(port: int) -> int:
    """The process group of the server started with ``--port PORT`` (ours are started by _servers.serve)."""
    needle = f"--port\0{port}\0".encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if needle in cmdline.read():
                        return os.getpgid(int(entry.name))
            except OSError:
                continue
    raise LookupError(f"no process started with --port {port}")
