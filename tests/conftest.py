"""Shared fixtures and the suite's rules. Component folders add their own in tests/<component>/conftest.py.

``pair`` is the real service pair on loopback, shared by the end-to-end tests of several
folders (sdk, cli, gateway, server, contract). The encoder runs the tiny `clipsearch-tiny`
config with deliberately random weights (fast; meaning-free but deterministic), the index a
fresh data dir. ``small_catalog`` is a small demo catalog rendered once per session.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

# Make `harness`, `standin`, `certs` and `reliability_support` importable without installing tests
# as a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ServerThread

#: The kinds of test; every test module declares exactly one in ``pytestmark`` (pyproject.toml).
KINDS = ("unit", "functional", "reliability", "quality", "cluster")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a module without a kind fails every run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})
        if len(kinds) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(kinds) or 'no kind'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one kind marker ({', '.join(KINDS)}), set once per module as"
            f" `pytestmark = pytest.mark.<kind>`; {len(wrong)} tests do not:\n" + "\n".join(wrong)
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Seconds per top-level test folder (setup + call + teardown of each test), slowest first."""
    seconds: dict[str, float] = defaultdict(float)
    tests: dict[str, set[str]] = defaultdict(set)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                folder = _folder(report.nodeid)
                seconds[folder] += report.duration
                tests[folder].add(report.nodeid)
    if not seconds:
        return
    terminalreporter.write_sep("=", "seconds per test folder (setup + call + teardown)")
    for folder, total in sorted(seconds.items(), key=lambda entry: -entry[1]):
        terminalreporter.write_line(f"{total:8.1f} s {len(tests[folder]):5d} tests  {folder}")
    count = sum(len(ids) for ids in tests.values())
    terminalreporter.write_line(f"{sum(seconds.values()):8.1f} s {count:5d} tests  in all")


def _folder(nodeid: str) -> str:
    """tests/index/test_x.py::test_y[1] -> tests/index (the folder of a file right in tests/: tests)."""
    parts = nodeid.split("::")[0].split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else "/".join(parts[:-1]) or "."


@dataclass(frozen=True)
class Pair:
    encoder: str
    index: str
    encoder_thread: ServerThread
    index_thread: ServerThread


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory):
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    encoder_settings = EncoderSettings(port=0, model="clipsearch-tiny", pretrained="random")
    index_settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("index-data"))
    with (
        ServerThread(lambda: create_encoder(encoder_settings), name="encoder") as encoder,
        ServerThread(lambda: create_index(index_settings), name="index") as index,
    ):
        yield Pair(encoder.address, index.address, encoder, index)


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 rendered products (csv: id,image,title,category,color,pattern,price,brand,sku,description)."""
    from clipsearch.apps.demo.catalog import generate_catalog

    return generate_catalog(tmp_path_factory.mktemp("catalog"), n_products=40, seed=7, image_size=64)
