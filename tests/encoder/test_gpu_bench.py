"""The GPU check's load generator and report, against the test encoder (the full rehearsal is
``benchmarks/gpu_check.sh --rehearse``, too long for the suite)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from encoder_media import image_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpu_bench import REHEARSE, Report, markdown
from gpu_load import Load, run_load

pytestmark = pytest.mark.functional


def test_closed_and_open_loops_from_client_processes(encoder_address: str) -> None:
    images = [image_bytes("JPEG", size=(64, 64), color=(10 * i, 50, 90)) for i in range(4)]
    closed = run_load(
        Load(encoder_address, "images", 2, processes=2, concurrency=2, seconds=1.0, warm_s=0.3), images
    )
    assert closed.calls > 0 and not closed.errors
    assert closed.items == 2 * closed.calls and closed.items_per_s > 0
    opened = run_load(
        Load(encoder_address, "texts", 3, processes=1, concurrency=1, seconds=1.0, rate=20, warm_s=0.3),
        ["a red dress", "blue sneakers"],
    )
    assert not opened.errors and 5 <= len(opened.latencies_ms) <= 45
    assert opened.percentile(99) >= opened.percentile(50) > 0


def test_the_report_states_every_target() -> None:
    report = Report(REHEARSE, environment={"model": "clipsearch-tiny (random, WEIGHTS ARE RANDOM)"})
    report.in_process["device decode + encode, batch 64"] = 1000.0
    for name, load, per_s in (
        ("images64", "64 images per call", 900.0),
        ("images1", "1 image per call", 400.0),
        ("texts64", "64 texts per call", 8000.0),
        ("images64 at half peak", "64 images per call, open loop", 450.0),
    ):
        report.cells.append(
            {
                "cell": name,
                "image_decode": "device",
                "servers": 1,
                "load": load,
                "items_per_s": per_s,
                "calls_per_s": per_s / 64,
                "p50_ms": 10.0,
                "p95_ms": 20.0,
                "p99_ms": 30.0,
                "mean_batch": 32.0,
                "model_busy": 0.5,
                "server_cpu_cores": 1.0,
                "gpu_util_pct": None,
                "decodes": {"device": 1, "cpu": 0, "fallback": 0},
                "errors": {},
            }
        )
    text = markdown(report)
    assert "RANDOM weights" in text
    assert "| 64 images per call | >= 5,000 images/s | 900 images/s | NO |" in text
    assert "| >= 0.8 | 0.90 | yes |" in text
    assert "p99 at half of peak: 64 images per call, open loop | stated | p99 30.0 ms" in text
