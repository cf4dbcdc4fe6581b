"""The clipsearch command against the real pair, as a user runs it (a subprocess)."""

from __future__ import annotations

import csv
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
    assert len(hits) == 3 and {"id", "score", "metadata", "group"} == set(hits[0])
    assert hits[0]["group"] == hits[0]["id"], "an ingested product's items are grouped by its id"
    image = next(small_catalog.parent.glob("images/*"))
    done = clipsearch(
        "search", "--collection", "cli_e2e", "--image", str(image), "-k", "1", "--json", pair=pair
    )
    assert json.loads(done.stdout)["hits"][0]["metadata"]["image"] == f"images/{image.name}"


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


def test_loud_ingest_exit_codes_summary_and_failed_rows(pair, tmp_path, small_catalog) -> None:
    """4 of 5 rows fail: exit 1, a summary by kind, and a failed-rows file that can be ingested again."""
    image = next(small_catalog.parent.glob("images/*"))
    catalog = tmp_path / "shop.csv"
    catalog.write_text(
        "id,image,price\n"
        f"ok,{image},$3\n"
        "missing,nowhere.jpg,$4\n"
        f"badprice,{image},free\n"
        f"ok,{image},$5\n"
        ",x.jpg,$1\n"
    )
    failed_rows = tmp_path / "failed.csv"
    schema = '{"price": {"type": "float", "currency": "USD"}}'  # inferred, price would be a keyword
    done = clipsearch(
        "ingest", str(catalog), "--collection", "loud", "--schema", schema, "--failed-rows", str(failed_rows),
        pair=pair, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "ingested 1" in done.stdout and "failed 4" in done.stdout
    for line in ("1 image not found", "1 bad value", "1 duplicate id", "1 bad row"):
        assert line in done.stdout, done.stdout
    assert "error: 4 rows failed" in done.stderr and "Traceback" not in done.stderr
    rows = failed_rows.read_text().splitlines()
    assert rows[0] == "id,image,price" and len(rows) == 5
    tolerated = clipsearch(
        "ingest", str(catalog), "--collection", "loud", "--max-failures", "4", pair=pair, check=False
    )
    assert tolerated.returncode == 0 and "skipped 1" in tolerated.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["search", "--collection", "c", "--image", "missing.jpg"], "missing.jpg: no such file"),
        (["search", "--collection", "c", "--text", "x", "--filter", "{price: 3}"], "not JSON"),
        (["ingest", "missing.csv", "--collection", "c"], "missing.csv does not exist"),
    ],
)
def test_user_mistakes_are_one_line(pair, args, words) -> None:
    done = clipsearch(*args, pair=pair, check=False)
    assert done.returncode != 0 and words in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr


def test_a_dead_address_or_the_wrong_service_names_it_and_the_fix(pair) -> None:
    dead = clipsearch(
        "search",
        "--collection",
        "c",
        "--text",
        "x",
        "--encoder",
        "127.0.0.1:1",
        "--index",
        pair.index,
        check=False,
    )
    assert dead.returncode == 1, dead.stderr
    assert "the encoder at 127.0.0.1:1 is not reachable" in dead.stderr and "--encoder" in dead.stderr
    swapped = clipsearch(
        "search",
        "--collection",
        "c",
        "--text",
        "x",
        "--encoder",
        pair.index,
        "--index",
        pair.index,
        check=False,
    )
    assert f"the server at {pair.index} does not serve clipsearch.v1.EncoderService" in swapped.stderr
    assert "Traceback" not in dead.stderr + swapped.stderr


def test_version() -> None:
    assert clipsearch("--version").stdout.startswith("clipsearch ")


def test_search_modes_and_explanations(pair, ingested, small_catalog) -> None:
    """A SKU typed in lower case finds its product first in hybrid (auto) and keyword modes,
    and --explain says why: in the JSON and on a line under each hit of the table."""
    row = list(csv.DictReader(small_catalog.open()))[5]
    sku = row["sku"].lower()
    args = ("search", "--collection", "cli_e2e", "--text", sku, "-k", "3")
    for mode in ("auto", "hybrid", "keyword"):
        done = clipsearch(*args, "--mode", mode, "--explain", "--json", pair=pair)
        first = json.loads(done.stdout)["hits"][0]
        assert first["id"] == row["id"], mode
        why = first["explanation"]
        assert why["exact_fields"] == ["sku"] and why["boosted"] and why["keyword_rank"] == 1, mode
    table = clipsearch(*args, "--explain", pair=pair).stdout.splitlines()
    assert table[1].split()[2] == row["id"]
    assert "keyword " in table[2] and "exact sku" in table[2] and "boosted" in table[2]
    plain = clipsearch(*args, "--mode", "vector", "--json", pair=pair)
    assert all("explanation" not in hit for hit in json.loads(plain.stdout)["hits"])
    rrf = clipsearch(*args, "--fusion", "rrf", "--keyword-weight", "2", "--explain", "--json", pair=pair)
    assert json.loads(rrf.stdout)["hits"][0]["id"] == row["id"]
    image = next(small_catalog.parent.glob("images/*"))
    refused = clipsearch(
        "search",
        "--collection",
        "cli_e2e",
        "--image",
        str(image),
        "--mode",
        "keyword",
        pair=pair,
        check=False,
    )
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr and "text" in refused.stderr
