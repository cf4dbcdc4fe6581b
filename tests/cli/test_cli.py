"""The clipsearch command against the real pair, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.functional


def clipsearch(*args: str, pair=None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pair is not None:
        env.update(CLIPSEARCH_ENCODER=pair.encoder, CLIPSEARCH_INDEX=pair.index)
    return subprocess.run(
        [sys.executable, "-m", "clipsearch.apps.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=check,
        timeout=120,
    )


@pytest.fixture(scope="module")
def ingested(pair, small_catalog):
    done = clipsearch("ingest", str(small_catalog), "--collection", "cli_e2e", "--json", pair=pair)
    return json.loads(done.stdout)


def test_ingest_json_summary(ingested) -> None:
    assert ingested["ingested"] == 40 and ingested["failed"] == [] and ingested["skipped"] == 0


def test_search_json_is_machine_readable(pair, ingested, small_catalog) -> None:
    done = clipsearch(
        "search", "--collection", "cli_e2e", "--text", "a red dress", "-k", "3", "--json", pair=pair
    )
    hits = json.loads(done.stdout)["hits"]
    assert len(hits) == 3 and {"id", "score", "metadata"} == set(hits[0])
    image = next(small_catalog.parent.glob("images/*"))
    done = clipsearch(
        "search", "--collection", "cli_e2e", "--image", str(image), "-k", "1", "--json", pair=pair
    )
    assert json.loads(done.stdout)["hits"][0]["metadata"]["image"] == str(image.resolve())


def test_search_filter_and_table_output(pair, ingested) -> None:
    done = clipsearch(
        "search", "--collection", "cli_e2e", "--text", "shoes", "--filter", '{"price": {"lt": 40}}', pair=pair
    )
    assert done.stdout.splitlines()[0].split() == ["rank", "score", "id", "title"]


def test_errors_exit_nonzero_with_a_message(pair, ingested) -> None:
    done = clipsearch("search", "--collection", "nope", "--text", "x", pair=pair, check=False)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr and "Traceback" not in done.stderr


def test_health_and_collections(pair, ingested) -> None:
    done = clipsearch("health", "--encoder", pair.encoder, "--index", pair.index)
    assert done.stdout.count("SERVING") == 2
    listed = json.loads(clipsearch("collections", "list", pair=pair).stdout)
    assert "cli_e2e" in {c["name"] for c in listed}
    down = clipsearch("health", "--index", "127.0.0.1:1", "--timeout", "1", check=False)
    assert down.returncode == 1 and "UNREACHABLE" in down.stdout
