"""clipsearch loadtest: bounded runs, a table, JSON, and a PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def collection(pair, small_catalog) -> str:
    from clipsearch import SearchClient

    with SearchClient(pair.encoder, pair.index) as client:
        client.create_collection("load_e2e", exist_ok=True)
        client.ingest(small_catalog, collection="load_e2e")
    return "load_e2e"


def _loadtest(pair, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIPSEARCH_ENCODER": pair.encoder, "CLIPSEARCH_INDEX": pair.index}
    return subprocess.run(
        [sys.executable, "-m", "clipsearch.apps.cli", "loadtest", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )


def test_closed_loop_json_and_plot(pair, collection, small_catalog, tmp_path) -> None:
    plot = tmp_path / "latency.png"
    done = _loadtest(
        pair,
        "--collection", collection, "--catalog", str(small_catalog), "--concurrency", "4",
        "--requests", "60", "--warmup", "0.5", "--json", "--plot", str(plot),
        "--exact-collection", collection,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    assert summary["ok"] == 60 and summary["errors"] == {}
    assert set(summary["calls"]) == {"text", "image", "hybrid"}
    for call in summary["calls"].values():
        latency, encode, search = call["latency_ms"], call["encode_ms"], call["search_ms"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
        assert encode["p50"] > 0 and search["p50"] > 0
    assert summary["recall_at_k"] == pytest.approx(1.0)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_loop_table_and_error_counts(pair, collection) -> None:
    done = _loadtest(
        pair,
        "--collection",
        collection,
        "--mode",
        "open",
        "--rate",
        "40",
        "--duration",
        "2",
        "--warmup",
        "0.5",
    )
    assert "req/s (open)" in done.stdout and "text" in done.stdout

    env = {**os.environ, "CLIPSEARCH_ENCODER": pair.encoder, "CLIPSEARCH_INDEX": pair.index}
    failing = subprocess.run(
        [sys.executable, "-m", "clipsearch.apps.cli", "loadtest", "--collection", "missing",
         "--requests", "5", "--warmup", "0", "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    summary = json.loads(failing.stdout)
    assert failing.returncode == 1 and summary["ok"] == 0 and summary["errors"] == {"NOT_FOUND": 5}


def test_search_modes_side_by_side_on_the_demo_query_set(pair, collection) -> None:
    """Text queries from the demo catalog's hybrid set (typos, SKUs, brands) take turns in each
    mode; the report has each mode's figures and its p50 over vector-only."""
    done = _loadtest(
        pair,
        "--collection", collection, "--mix", "text=1", "--search-mode", "vector,hybrid,keyword,auto",
        "--demo-queries", "40", "--demo-seed", "7", "--concurrency", "2", "--requests", "40",
        "--warmup", "0.5", "--json",
    )  # fmt: skip
    summary = json.loads(done.stdout)
    assert summary["ok"] == 40 and summary["errors"] == {}
    assert set(summary["calls"]) == {"text/vector", "text/hybrid", "text/keyword", "text/auto"}
    assert summary["settings"]["search_modes"] == ["vector", "hybrid", "keyword", "auto"]
    assert summary["calls"]["text/keyword"]["encode_ms"]["max"] == 0, "keyword mode calls no encoder"
    assert summary["calls"]["text/hybrid"]["encode_ms"]["p50"] > 0
    assert set(summary["p50_ratio_text"]) == {"hybrid/vector", "keyword/vector", "auto/vector"}
    assert all(ratio > 0 for ratio in summary["p50_ratio_text"].values())
    table = _loadtest(
        pair, "--collection", collection, "--mix", "text=1", "--search-mode", "vector,hybrid",
        "--demo-queries", "40", "--demo-seed", "7", "--requests", "10", "--warmup", "0",
    ).stdout  # fmt: skip
    assert "text/hybrid" in table and "text p50 hybrid/vector:" in table
