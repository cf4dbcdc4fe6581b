"""kill -9 during ingest loses no acknowledged write (the long run: scripts/index_crash_test.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "index_crash_test.py"


def _crash_test_module():
    spec = importlib.util.spec_from_file_location("index_crash_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_kill_9_during_ingest_loses_no_acknowledged_write(tmp_path):
    figures = _crash_test_module().run_trials(4, seed=1, data_dir=tmp_path / "data")
    assert figures["acknowledged_writes"] > 0 and figures["lost"] == 0


@pytest.mark.slow
def test_kill_9_long_run(tmp_path):
    figures = _crash_test_module().run_trials(20, seed=2, data_dir=tmp_path / "data")
    assert figures["lost"] == 0
