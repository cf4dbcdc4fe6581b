"""The encoder as a process: `clipsearch serve encoder`, ready when SERVING, drained on SIGTERM.

Also what a fresh interpreter does before the model: settings import the standard library
only, and a bad --pretrained fails before torch is imported.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from encoder_rpc import embed, serving, text

from clipsearch.v1 import encoder_pb2_grpc

pytestmark = pytest.mark.functional


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_encoder_answers_then_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_ENCODER_PORT": str(port), "CLIPSEARCH_ENCODER_PRETRAINED": "random"}
    process = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.apps.cli", "serve", "encoder", "--model", "clipsearch-tiny"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                try:
                    if serving(channel):
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "never became SERVING"
                time.sleep(0.2)
            vectors, _ = embed(encoder_pb2_grpc.EncoderServiceStub(channel), [text("hello")])
            assert vectors.shape == (1, 64)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log = process.stdout.read() if process.stdout else ""
        assert "RANDOM weights" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_an_unloadable_model_exits_with_a_clear_message(tmp_path) -> None:
    missing = tmp_path / "missing.pt"
    result = subprocess.run(
        [sys.executable, "-m", "encoder_service", "--model", "clipsearch-tiny", "--pretrained", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"--pretrained {missing}: no such checkpoint file" in result.stderr


def test_settings_import_only_the_standard_library() -> None:
    code = (
        "import sys; import encoder_service.settings; "
        "heavy = [m for m in ('torch', 'open_clip', 'grpc', 'numpy', 'PIL') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_missing_pretrained_fails_before_torch_is_imported() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "encoder_service", "--model", "ViT-B-32"],
        capture_output=True,
        text=True,
        env={"PATH": "", "PYTHONPATH": ":".join(sys.path)},
    )
    assert out.returncode != 0
    assert "--pretrained: required for --model ViT-B-32" in out.stderr
