"""The committed protobuf code must be exactly what `make protos` produces."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "client" / "clipsearch" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env)
    fresh = tmp_path / "clipsearch" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_file())
    assert names == committed, "generated file set differs: run `make protos`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, COMMITTED, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code {mismatch + errors}: run `make protos`"


def test_every_proto_has_generated_stubs() -> None:
    protos = sorted(p.stem for p in (ROOT / "protos" / "clipsearch" / "v1").glob("*.proto"))
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert (COMMITTED / f"{stem}{suffix}").exists(), f"{stem}{suffix} missing"
