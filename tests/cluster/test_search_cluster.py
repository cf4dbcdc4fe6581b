"""A sharded, replicated index on a local 3-node Ray cluster, through Serve's gRPC proxy.

Results equal the standalone index's (and ``faiss.IndexShards``'s) for thousands of
queries; the SDK works unchanged; removing the node that holds one copy of every shard
group costs no search.
"""

from __future__ import annotations

import json
import subprocess
import sys

import faiss
import grpc
import numpy as np
import pytest

from clipsearch import SearchClient
from clipsearch.apps.demo.catalog import generate_catalog
from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import vector_to_proto
from index_service.config import CollectionConfig
from index_service.engine import Engine, EngineOptions

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

DIM, ITEMS, QUERIES, K = 32, 3000, 2000, 10


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((ITEMS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return [f"item-{i}" for i in range(ITEMS)], vectors, queries


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, data):
    ids, vectors, _ = data
    engine = Engine(EngineOptions(tmp_path_factory.mktemp("standalone"), background=False))
    engine.create_collection(CollectionConfig(name="products", dimension=DIM, num_shards=2))
    engine.collection("products").upsert(ids, vectors, [{"n": float(i)} for i in range(ITEMS)])
    yield engine.collection("products")
    engine.close()


@pytest.fixture(scope="module")
def cluster(cluster_factory, data):
    resources = [{"clipsearch_copy_0": 1}, {"clipsearch_copy_1": 1}]
    with cluster_factory(groups=2, copies=2, worker_resources=resources) as running:
        with SearchClient(running.address, running.address) as client:
            client.index.create_collection("products", dimension=DIM, num_shards=2)
            ids, vectors, _ = data
            for start in range(0, ITEMS, 500):
                client.index.upsert(
                    "products",
                    ids[start : start + 500],
                    vectors[start : start + 500],
                    [{"n": float(i)} for i in range(start, min(start + 500, ITEMS))],
                )
        yield running


def search(address: str, queries: np.ndarray, **options) -> index_pb2.SearchResponse:
    with grpc.insecure_channel(address) as channel:
        request = index_pb2.SearchRequest(
            collection="products", queries=[vector_to_proto(q) for q in queries], k=K, **options
        )
        return index_pb2_grpc.IndexServiceStub(channel).Search(request, timeout=60)


def ids_of(response: index_pb2.SearchResponse) -> list[list[str]]:
    return [[hit.id for hit in result.hits] for result in response.results]


def test_cluster_results_equal_standalone_and_index_shards(cluster, standalone, data):
    ids, vectors, queries = data
    expected = [
        [h.id for h in hits]
        for start in range(0, QUERIES, 500)
        for hits in standalone.search(queries[start : start + 500], K)
    ]
    oracle = faiss.IndexShards(DIM, False, False)  # not threaded; keep the ids given
    parts = [faiss.IndexIDMap(faiss.IndexFlatIP(DIM)) for _ in range(2)]
    for n, part in enumerate(parts):
        part.add_with_ids(vectors[n::2], np.arange(n, ITEMS, 2))
        oracle.add_shard(part)
    _, labels = oracle.search(queries, K)
    got: list[list[str]] = []
    coverage = set()
    for start in range(0, QUERIES, 500):
        response = search(cluster.address, queries[start : start + 500])
        got += ids_of(response)
        coverage.add((response.coverage.shards_answered, response.coverage.shards_asked))
    assert got == expected
    assert coverage == {(2, 2)}
    assert [[ids[j] for j in row] for row in labels] == got


def test_sdk_works_against_the_cluster_unchanged(cluster, data):
    with SearchClient(cluster.address, cluster.address) as client:
        assert client.model.name == "clipsearch-tiny"
        vectors = client.encoder.embed_texts(["a red dress", "a blue scarf"])
        assert vectors.shape == (2, client.model.embedding_dim)
        info = client.index.describe_collection("products")
        assert info.item_count == ITEMS
        _, vectors, _ = data
        assert [h.id for h in client.index.search("products", vectors[42], k=1)] == ["item-42"]
        assert client.index.get("products", ["item-5"])[0].metadata == {"n": 5.0}


def test_ingest_stream_and_loadtest_through_the_proxy(cluster, tmp_path):
    """EmbedStream (what ``ingest`` rides on) and ``clipsearch loadtest`` reach the cluster unchanged."""
    catalog = generate_catalog(tmp_path / "catalog", n_products=12, seed=5)
    with SearchClient(cluster.address, cluster.address) as client:
        client.create_collection("streamed", num_shards=2)
        first = client.ingest(catalog, collection="streamed", batch_size=4)
        again = client.ingest(catalog, collection="streamed", batch_size=4)
        assert (first.ingested, first.skipped, first.failed) == (12, 0, [])
        assert (again.ingested, again.skipped) == (0, 12), "resume works through the proxy"
        assert client.index.describe_collection("streamed").item_count == 12
    command = [sys.executable, "-m", "clipsearch.apps.cli", "loadtest", "--encoder", cluster.address]
    command += ["--index", cluster.address, "--collection", "streamed", "--requests", "30", "--json"]
    command += ["--concurrency", "4", "--warmup", "0.5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] >= 30 and summary["errors"] == {}


def test_lifecycle_verbs_through_the_cluster(cluster, standalone, data, tmp_path):
    """Count, scroll, metadata updates, deletes, grouped search and aliases across shard groups
    answer as the standalone index does; Backup is UNIMPLEMENTED with the documented reason."""
    from clipsearch import IndexClient, UnimplementedError
    from clipsearch.errors import ClipsearchError, StatusCode
    from index_service.filters import Range

    _, vectors, queries = data
    with IndexClient(cluster.address) as client:
        assert client.count("products") == ITEMS
        assert (
            client.count("products", filter={"n": {"lt": 100}}) == standalone.count(Range("n", lt=100)) == 100
        )
        scrolled = [
            item.id for item in client.iter_items("products", filter={"n": {"lt": 700}}, page_size=97)
        ]
        assert scrolled == sorted(f"item-{i}" for i in range(700)), "every item once, in id order"
        # Products whose images are spread over both shard groups.
        client.create_collection("grouped", dimension=DIM, num_shards=1)
        member_ids = [f"prod{p}-img{i}" for p in range(30) for i in range(4)]
        client.upsert(
            "grouped", member_ids, vectors[: len(member_ids)], groups=[m.split("-")[0] for m in member_ids]
        )
        standalone_engine = Engine(EngineOptions(tmp_path / "grouped", background=False))
        standalone_engine.create_collection(CollectionConfig(name="grouped", dimension=DIM))
        local = standalone_engine.collection("grouped")
        local.upsert(member_ids, vectors[: len(member_ids)], groups=[m.split("-")[0] for m in member_ids])
        for query in queries[:20]:
            hits = client.search("grouped", query, k=7, group_size=2)
            [expected] = local.search_groups(query[None, :], 7, 2)
            # The groups and their best hits are exact; further members depend on the candidates seen.
            assert [(h.group, h.id) for h in hits] == [(g.group, g.hits[0].id) for g in expected]
            assert all(1 <= len(h.group_hits) <= 2 for h in hits)
        standalone_engine.close()
        assert client.update_metadata("grouped", groups=["prod3"], set={"sale": True}) == 4
        assert client.count("grouped", filter={"sale": True}) == 4
        assert client.delete("grouped", filter={"sale": True}, dry_run=True) == 4
        assert client.delete("grouped", groups=["prod3", "prod4"]) == 8
        assert client.count("grouped") == 112
        client.set_alias("front", "grouped")
        assert client.search("front", queries[0], k=3, group_size=1)
        assert [(a.alias, a.collection) for a in client.list_aliases()] == [("front", "grouped")]
        with pytest.raises(UnimplementedError, match="data directory"):
            client.backup(tmp_path / "cluster.tar")
        # Bad input gets the standalone index's precise statuses, naming the field.
        foreign = client.scroll("products", limit=1).next_cursor
        bad_input = [
            (lambda: client.count("no_such_alias"), StatusCode.NOT_FOUND, "collection"),
            (lambda: client.scroll("front", cursor=foreign), StatusCode.INVALID_ARGUMENT, "cursor"),
            (
                lambda: client.count("front", filter={"colour": "red"}),
                StatusCode.INVALID_ARGUMENT,
                "filter.condition.field",
            ),
            (
                lambda: client.delete("front", filter={"colour": "red"}),
                StatusCode.INVALID_ARGUMENT,
                "filter.condition.field",
            ),
            (
                lambda: client.update_metadata("no_such_alias", ["a"], set={"n": 1.0}),
                StatusCode.NOT_FOUND,
                "collection",
            ),
            (lambda: client.set_alias("front2", "no_such_collection"), StatusCode.NOT_FOUND, "collection"),
            (lambda: client.delete_alias("no_such_alias"), StatusCode.NOT_FOUND, "alias"),
        ]
        for call, code, field in bad_input:
            with pytest.raises(ClipsearchError) as error:
                call()
            assert (error.value.code, error.value.field) == (code, field), error.value.message
        client.delete_alias("front")
        client.drop_collection("grouped")


def test_keyword_and_hybrid_search_through_the_cluster(cluster, data):
    """Pools of both shard groups, merged, fused once: SKUs first, filters inside both sides
    (exactly k matching), products once, explanations; the same answers a standalone gives
    where BM25 statistics cannot differ (a SKU, a filter's page size)."""
    from clipsearch import IndexClient
    from clipsearch.schema import Field, FieldType, Schema

    _, vectors, queries = data
    colors, kinds = ["red", "blue", "green", "black"], ["dress", "scarf", "hat"]
    schema = Schema(
        (Field("title", FieldType.TEXT), Field("sku", FieldType.KEYWORD), Field("n", FieldType.FLOAT))
    )
    ids = [f"t{i}" for i in range(600)]
    metadata = [
        {"title": f"{colors[i % 4]} {kinds[i % 3]}", "sku": f"SK-{i:05d}", "n": float(i)} for i in range(600)
    ]
    with IndexClient(cluster.address) as client:
        client.create_collection("textual", dimension=DIM, num_shards=2, schema=schema)
        client.upsert("textual", ids, vectors[:600], metadata, groups=[f"g{i // 2}" for i in range(600)])
        [hit] = client.keyword_search("textual", "SK-00417", k=1, explain=True)
        assert hit.id == "t417" and hit.explanation.boosted
        hits = client.search("textual", queries[0], mode="hybrid", texts=["red dres"], k=20, explain=True)
        assert [h.metadata["title"] for h in hits] == ["red dress"] * 20
        assert all(h.explanation.keyword_score is not None for h in hits)
        for where, k in [({"n": {"lt": 9}}, 12), ({"n": {"gte": 300}}, 40)]:
            hits = client.search("textual", queries[1], mode="hybrid", texts=["black hat"], k=k, filter=where)
            expected = min(k, sum(1 for m in metadata if _passes(m["n"], where["n"])))
            assert len(hits) == expected and all(_passes(h.metadata["n"], where["n"]) for h in hits)
        products = client.search(
            "textual", queries[2], mode="hybrid", texts=["green scarf"], k=8, group_size=2
        )
        assert len({h.group for h in products}) == 8
        client.drop_collection("textual")


def _passes(value: float, bounds: dict) -> bool:
    return all({"lt": value < b, "gte": value >= b}[op] for op, b in bounds.items())


def test_losing_the_node_with_one_copy_of_every_group_fails_no_search(cluster, standalone, data):
    _, _, queries = data
    expected = [[h.id for h in hits] for hits in standalone.search(queries[:300], K)]
    cluster.kill_worker(1)
    got, coverages = [], set()
    for start in range(0, 300, 10):
        response = search(cluster.address, queries[start : start + 10])
        got += ids_of(response)
        coverages.add(response.coverage.shards_answered)
    assert got == expected
    assert coverages == {2}
