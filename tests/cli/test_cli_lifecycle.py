"""The everyday verbs from the command line: get, count, export, update, delete, sync, aliases,
backup and restore, drop with its question. Real pair, real subprocesses."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.cli.test_cli import clipsearch

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def shop(pair, small_catalog, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_shop")
    shutil.copytree(small_catalog.parent, folder, dirs_exist_ok=True)
    catalog = folder / small_catalog.name
    clipsearch("ingest", str(catalog), "--collection", "cli_life", "--json", pair=pair)
    yield catalog
    clipsearch("collections", "drop", "cli_life", "--yes", pair=pair, check=False)


def test_get_count_and_export(pair, shop, tmp_path) -> None:
    got = clipsearch("get", "--collection", "cli_life", "p00001", "p00002", pair=pair)
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    assert [item["id"] for item in lines] == ["p00001", "p00002"] and "vector" not in lines[0]
    total = int(clipsearch("count", "--collection", "cli_life", pair=pair).stdout)
    hats = int(
        clipsearch("count", "--collection", "cli_life", "--filter", '{"category": "hat"}', pair=pair).stdout
    )
    assert total == 40 and 0 < hats < 40
    out = tmp_path / "export.jsonl"
    done = clipsearch(
        "export", "--collection", "cli_life", "--vectors", "-o", str(out), "--page-size", "7", pair=pair
    )
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 40 and "exported 40 items" in done.stderr
    assert [e["id"] for e in exported] == sorted(e["id"] for e in exported)
    assert all(len(e["vector"]) > 0 for e in exported)
    missing = clipsearch("get", "--collection", "cli_life", "nope", pair=pair, check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "nope" in missing.stderr


def test_update_and_delete_with_dry_runs(pair, shop) -> None:
    dry = clipsearch(
        "update",
        "--collection",
        "cli_life",
        "--filter",
        '{"category": "hat"}',
        "--set",
        '{"price": 1.5}',
        "--dry-run",
        pair=pair,
    )
    hats = int(dry.stdout.split()[2])
    assert dry.stdout.startswith("would update") and hats > 0
    done = clipsearch(
        "update",
        "--collection",
        "cli_life",
        "--filter",
        '{"category": "hat"}',
        "--set",
        '{"price": 1.5}',
        pair=pair,
    )
    assert done.stdout.strip() == f"updated {hats} items"
    count = clipsearch("count", "--collection", "cli_life", "--filter", '{"price": {"lt": 2}}', pair=pair)
    assert int(count.stdout) == hats
    bad = clipsearch(
        "update", "--collection", "cli_life", "p00001", "--set", '{"price": "free"}', pair=pair, check=False
    )
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "set.price" in bad.stderr
    nothing = clipsearch("delete", "--collection", "cli_life", pair=pair, check=False)
    assert nothing.returncode != 0 and "ids, --group or --filter" in nothing.stderr
    asked = clipsearch(
        "delete", "--collection", "cli_life", "--filter", '{"price": {"lt": 2}}', pair=pair, check=False
    )
    assert asked.returncode == 1 and "--yes" in asked.stderr, (
        "no terminal: a filtered delete asks, so it refuses"
    )
    preview = clipsearch("delete", "--collection", "cli_life", "--group", "p00003", "--dry-run", pair=pair)
    assert preview.stdout.strip() == "would delete 1 items"
    gone = clipsearch("delete", "--collection", "cli_life", "p00003", pair=pair)
    assert gone.stdout.strip() == "deleted 1 items"
    clipsearch("ingest", str(shop), "--collection", "cli_life", "--json", pair=pair)  # put it back


def test_ingest_sync_with_dry_run(pair, shop, tmp_path) -> None:
    with shop.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    smaller = tmp_path / "smaller.csv"
    shutil.copytree(shop.parent / "images", tmp_path / "images")
    with smaller.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:35])
    preview = clipsearch("ingest", str(smaller), "--collection", "cli_life", "--sync", "--dry-run", pair=pair)
    assert "dry run, nothing written" in preview.stdout and "delete 5" in preview.stdout
    assert int(clipsearch("count", "--collection", "cli_life", pair=pair).stdout) == 40
    done = clipsearch("ingest", str(smaller), "--collection", "cli_life", "--sync", "--json", pair=pair)
    assert json.loads(done.stdout)["deleted"] == 5
    assert int(clipsearch("count", "--collection", "cli_life", pair=pair).stdout) == 35
    clipsearch("ingest", str(shop), "--collection", "cli_life", "--json", pair=pair)


def test_aliases_backup_restore_and_drop(pair, shop, tmp_path) -> None:
    switched = clipsearch("aliases", "set", "cli_front", "cli_life", pair=pair)
    assert switched.stdout.strip() == "cli_front -> cli_life (new)"
    listed = json.loads(clipsearch("aliases", "list", pair=pair).stdout)
    assert {"alias": "cli_front", "collection": "cli_life", "previous": ""} in listed
    search = clipsearch(
        "search", "--collection", "cli_front", "--text", "a hat", "-k", "2", "--json", pair=pair
    )
    assert len(json.loads(search.stdout)["hits"]) == 2
    archive = tmp_path / "life.tar"
    backed = clipsearch("backup", str(archive), "--collection", "cli_front", pair=pair)
    assert archive.is_file() and "MB/s" in backed.stdout
    restored = clipsearch("restore", str(archive), "--as", "cli_life_copy", pair=pair)
    assert "restored cli_life_copy: 40 items (verified)" in restored.stdout
    refused = clipsearch("collections", "drop", "cli_life_copy", pair=pair, check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert "cli_life_copy" in clipsearch("collections", "list", pair=pair).stdout
    clipsearch("collections", "drop", "cli_life_copy", "--yes", pair=pair)
    aliased = clipsearch("collections", "drop", "cli_life", "--yes", pair=pair, check=False)
    assert (
        aliased.returncode == 1 and "FAILED_PRECONDITION" in aliased.stderr and "cli_front" in aliased.stderr
    )
    clipsearch("aliases", "delete", "cli_front", pair=pair)
