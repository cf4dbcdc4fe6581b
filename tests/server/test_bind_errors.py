"""Every server that cannot bind says so in one sentence naming the port and what to change.

A port taken by another program (a plain socket here) for each server's --port, and for
each gRPC server's --metrics-port: the process exits 1, its log holds one "cannot start"
line naming the address and the flag and variable to change, and no traceback. `make demo`
with a port taken stops with one sentence saying which demo flag to use.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from reliability_support import ROOT, TINY_ENCODER, crash_machinery

pytestmark = pytest.mark.functional

SERVERS = {
    "encoder": (["serve", "encoder", *TINY_ENCODER], "CLIPSEARCH_ENCODER_"),
    "index": (["serve", "index", "--data-dir", "{tmp}/index"], "CLIPSEARCH_INDEX_"),
    "gateway": (["serve", "gateway"], "CLIPSEARCH_GATEWAY_"),
    "page": (["ui"], "CLIPSEARCH_UI_"),
}


@pytest.fixture
def taken():
    """A port held by another program (listening, so nothing else can bind it)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def run(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return subprocess.run(
        [sys.executable, "-m", "clipsearch.apps.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_one_sentence(done: subprocess.CompletedProcess, port: int, flag: str, variable: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, done.stderr[-2000:]
    assert f"127.0.0.1:{port}" in lines[0] and f"choose another with {flag} or ${variable}" in lines[0], lines


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_taken_port(server, taken, tmp_path) -> None:
    args, prefix = SERVERS[server]
    done = run([*args, "--port", str(taken)], tmp_path)
    assert_one_sentence(done, taken, "--port", f"{prefix}PORT")


@pytest.mark.parametrize("server", ["encoder", "index", "gateway"])
def test_a_taken_metrics_port(server, taken, tmp_path) -> None:
    args, prefix = SERVERS[server]
    port = crash_machinery().free_port()
    done = run([*args, "--port", str(port), "--metrics-port", str(taken)], tmp_path)
    assert_one_sentence(done, taken, "--metrics-port", f"{prefix}METRICS_PORT")


def test_make_demo_with_a_taken_port_says_which_flag_to_change(taken, tmp_path) -> None:
    demo = ["--state-dir", str(tmp_path / "demo"), "--encoder-port", str(taken), "--products", "4"]
    done = subprocess.run(
        [sys.executable, "-m", "clipsearch.apps.demo.run", *demo],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    message = done.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{taken}" in message and "--encoder-port" in message and "DEMO_ARGS" in message, message
