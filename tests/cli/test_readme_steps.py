"""The README's Python and command-line steps, run in sequence exactly as written.

The only change is where the services are: the steps read $CLIPSEARCH_ENCODER and
$CLIPSEARCH_INDEX, which point at the test pair. ``catalog.csv`` and ``photo.jpg`` are a
rendered catalog and one of its pictures, in the working directory as the steps assume.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
#: Commands of the README's CLI block that need no server of their own (serve/ui/loadtest do).
RUN = ("clipsearch ingest", "clipsearch search", "clipsearch collections")


def _block(section: str, language: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(section)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture
def workdir(tmp_path: Path, small_catalog: Path) -> Path:
    shutil.copytree(small_catalog.parent, tmp_path, dirs_exist_ok=True)
    (tmp_path / small_catalog.name).rename(tmp_path / "catalog.csv")
    shutil.copy(next((tmp_path / "images").iterdir()), tmp_path / "photo.jpg")
    return tmp_path


def test_the_python_then_the_cli_steps(pair, workdir: Path) -> None:
    env = {**os.environ, "CLIPSEARCH_ENCODER": pair.encoder, "CLIPSEARCH_INDEX": pair.index}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the `clipsearch` command
    python = subprocess.run(
        [sys.executable, "-c", _block("## Use it from Python", "python")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert python.returncode == 0, python.stderr
    assert python.stdout.startswith("40 ingested; 0 failed")
    commands = [
        line.split("#")[0].strip() for line in _block("## Use it from the command line", "bash").splitlines()
    ]
    ran = 0
    for command in commands:
        if not command.startswith(RUN):
            continue
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        ran += 1
    assert ran == 5  # ingest, search by text, by image, hybrid with explanations, describe
