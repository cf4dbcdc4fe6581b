"""``clipsearch bulk-ingest`` on 2 local Ray nodes: every item searchable, resumable, bad rows reported."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from harness import ServerThread

from clipsearch import IndexClient, NotFoundError
from clipsearch.apps.demo.catalog import generate_catalog
from index_service.server import create_server
from index_service.settings import IndexSettings

ray = pytest.importorskip("ray")

# 600 s: a node start that times out is tried once more (clipsearch.cluster.local.start_nodes).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

PRODUCTS = 40


@pytest.fixture(scope="module")
def two_nodes():
    """Head + one worker, 2 logical CPUs each: one 1.5-CPU encode actor fits per node, beside a loader."""
    from clipsearch.cluster.local import start_nodes

    node = {"include_dashboard": False, "object_store_memory": 80 * 1024**2, "num_cpus": 2}
    cluster, _ = start_nodes(node, [node])
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("bulk-index"), grace_s=1.0)
    thread = ServerThread(lambda: create_server(settings), name="index-server").start()
    yield thread.address
    thread.stop()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """The demo catalog plus two bad rows: a missing image and a repeated id."""
    path = generate_catalog(tmp_path_factory.mktemp("bulk-catalog"), n_products=PRODUCTS, seed=3)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.append({**rows[0], "id": "no-such-image", "image": "images/missing.jpg"})
    rows.append(dict(rows[1]))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _options(index: str, **changes):
    from clipsearch.cluster.bulk_ingest import BulkIngestOptions, CreateSpec

    settings = {"collection": "bulk", "index_address": index, "encoder": {"threads": 1}, "batch_size": 4}
    settings |= {"encoders": 2, "encoder_cpus": 1.5, "block_rows": 4, "create": CreateSpec(num_shards=2)}
    return BulkIngestOptions(**(settings | changes))


def test_bulk_ingest_on_two_nodes_then_resume(two_nodes, index, catalog, tmp_path):
    from clipsearch.cluster.bulk_ingest import bulk_ingest
    from encoder_service.core import ImageInput
    from encoder_service.factory import core_from_settings
    from encoder_service.settings import EncoderSettings

    report = bulk_ingest(catalog, _options(index, embeddings_dir=str(tmp_path / "embeddings")))
    assert report.ingested == PRODUCTS and report.skipped == 0
    assert [(f.id, f.kind) for f in report.failed] == [
        ("no-such-image", "image not found"),
        (report.failed[1].id, "duplicate id"),
    ]
    assert report.failed[1].reason == "duplicate id (row 2)"
    assert len(report.encoded_on) == 2, "both nodes' encode actors did work"

    with open(catalog, newline="") as handle:
        rows = list(csv.DictReader(handle))[:PRODUCTS]
    ids = [row["id"] for row in rows]
    with IndexClient(index) as client:
        assert client.describe_collection("bulk").item_count == PRODUCTS
        stored = client.get("bulk", ids, include_vectors=True)
        hits = client.search_batch("bulk", np.stack([item.vector for item in stored]), k=1)
        assert [h[0].id for h in hits] == ids, "every item searches back to itself"
        assert stored[0].metadata["category"] == rows[0]["category"]

    # The same vectors as the encoder core in this process (the one the encoder server runs).
    core = core_from_settings(EncoderSettings(threads=1))
    images = [ImageInput((catalog.parent / row["image"]).read_bytes()) for row in rows[:4]]

    async def embed() -> np.ndarray:
        await core.start(warm_up=False)
        return await core.embed(images)

    expected = asyncio.run(embed())
    core.close()
    np.testing.assert_allclose(np.stack([item.vector for item in stored[:4]]), expected, atol=1e-5)

    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "embeddings")
    assert sorted(table.column("id").to_pylist()) == sorted(ids)
    assert len(table.column("vector")[0]) == expected.shape[1]
    assert "title" in json.loads(table.column("metadata")[0].as_py())
    assert all(len(key) >= 32 for key in table.column("content_key").to_pylist()), "the resume key"

    again = bulk_ingest(catalog, _options(index))
    assert (again.ingested, again.skipped, len(again.failed)) == (0, PRODUCTS, 2), "a re-run resumes"


def test_unknown_collection_is_refused_before_any_model_loads(two_nodes, index, catalog):
    from clipsearch.cluster.bulk_ingest import bulk_ingest

    with pytest.raises(NotFoundError, match="absent"):
        bulk_ingest(catalog, _options(index, collection="absent", create=None))


def test_the_command_joins_a_running_cluster(two_nodes, index, catalog):
    """``clipsearch bulk-ingest --ray-address``: the CLI as users run it, in its own process."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "clipsearch.apps.cli",
        "bulk-ingest",
        str(catalog),
        "--collection",
        "cli",
    ]
    command += ["--index", index, "--ray-address", two_nodes.address, "--encoder-cpus", "1.5"]
    command += ["--threads", "1", "--num-shards", "2", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["ingested"], summary["skipped"], len(summary["failed"])) == (PRODUCTS, 0, 2)
    with IndexClient(index) as client:
        assert client.describe_collection("cli").item_count == PRODUCTS
