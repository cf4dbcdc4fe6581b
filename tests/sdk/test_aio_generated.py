"""clipsearch.aio is generated from the sync clients: current, and the same surface."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import clipsearch
from clipsearch import aio

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_module_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_aio.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["EncoderClient", "IndexClient", "SearchClient"])
def test_same_methods_and_signatures_as_the_sync_client(name: str) -> None:
    sync, twin = getattr(clipsearch, name), getattr(aio, name)
    public = {m for m in dir(sync) if not m.startswith("_") and callable(getattr(sync, m))}
    properties = {m for m in dir(sync) if isinstance(inspect.getattr_static(sync, m), property)}
    assert public | properties == {
        m for m in dir(twin) if not m.startswith("_") and callable(getattr(twin, m))
    }
    for method in sorted(public):
        sync_signature = inspect.signature(getattr(sync, method))
        twin_signature = inspect.signature(getattr(twin, method))
        assert list(sync_signature.parameters) == list(twin_signature.parameters), method
        twin_method = getattr(twin, method)
        assert inspect.iscoroutinefunction(twin_method) or inspect.isasyncgenfunction(twin_method), method
    assert (name == "SearchClient") or issubclass(twin, clipsearch._calls.AsyncServiceClient)


def test_the_sync_search_client_property_is_an_awaitable_method_in_aio() -> None:
    assert isinstance(inspect.getattr_static(clipsearch.SearchClient, "model"), property)
    assert inspect.iscoroutinefunction(aio.SearchClient.model)
