"""A Node.js client that knows the services only through reflection can use them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

INTEROP = Path(__file__).resolve().parent / "interop"


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (INTEROP / "node_modules" / "grpc-js-reflection-client").exists():
        return "run `npm ci` in tests/contract/interop (make test does)"
    return None


def test_node_client_discovers_and_calls_both_services(pair) -> None:
    missing = _node_ready()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"interop test cannot run in CI: {missing}")
        pytest.skip(missing)
    done = subprocess.run(
        ["node", "reflection_client.mjs", pair.encoder, pair.index],
        cwd=INTEROP,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "clipsearch.v1.EncoderService" in result["encoder_services"]
    assert "clipsearch.v1.IndexService" in result["index_services"]
    assert "grpc.health.v1.Health" in result["index_services"]
    assert result["vector_bytes"] == 4 * result["model"]["embedding_dim"]
    assert result["vector_norm"] == pytest.approx(1.0, abs=1e-4)
    assert result["hits"][0]["id"] == "node-1" and result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert result["hits"][0]["title"] == "Red dress"
    assert result["unknown_collection_status"] == "NOT_FOUND"
