"""The SDK contract of `make lint` (pyproject.toml, [tool.importlinter]) covers the whole SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOT_SDK = {"apps", "cluster", "server"}  # applications, the Ray composition, the server kit


def test_the_sdk_contract_lists_every_sdk_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [sdk] = [c for c in config["contracts"] if c["name"].startswith("The SDK imports no server code")]
    package = ROOT / "client" / "clipsearch"
    on_disk = {f"clipsearch.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    on_disk |= {
        f"clipsearch.{p.parent.name}" for p in package.glob("*/__init__.py") if p.parent.name not in NOT_SDK
    }
    assert set(sdk["source_modules"]) == on_disk
