"""Runs every ```python block of docs/sdk.md, in order, against the real pair."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def test_sdk_guide_examples_run(pair, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CLIPSEARCH_ENCODER", pair.encoder)
    monkeypatch.setenv("CLIPSEARCH_INDEX", pair.index)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "docs_sdk"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/sdk.md block {number}", "exec"), namespace)
    output = capsys.readouterr().out
    assert "60 ingested, 0 unchanged, 0 failed" in output
    assert "not found:" in output and "INVALID_ARGUMENT inputs[0]" in output
