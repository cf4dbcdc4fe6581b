"""Keyword and hybrid search over real gRPC: filters inside both retrievals (exactly k
matching hits), deletes and updates seen by both sides, products, explanations, the
schema growing, a restart, and the errors of careless requests."""

from __future__ import annotations

import itertools

import grpc
import numpy as np
import pytest
from harness import ServerThread

from clipsearch import HybridOptions, IndexClient
from clipsearch.errors import FailedPreconditionError, InvalidArgumentError
from clipsearch.schema import Field, FieldType, Schema
from clipsearch.v1 import index_pb2, index_pb2_grpc

pytestmark = pytest.mark.functional

D = 8
N = 240
COLORS = ["red", "blue", "green", "black", "white", "grey"]
KINDS = ["dress", "t-shirt", "hat", "scarf", "sneakers"]
BRANDS = ["Kestrel", "Orca", "Umbra", "Halden"]
SCHEMA = Schema(
    (
        Field("title", FieldType.TEXT),
        Field("brand", FieldType.KEYWORD, case_insensitive=True),
        Field("sku", FieldType.KEYWORD),
        Field("price", FieldType.FLOAT),
        Field("tags", FieldType.KEYWORDS),
    )
)


def _metadata(i: int) -> dict:
    return {
        "title": f"{COLORS[i % 6]} {KINDS[i % 5]}",
        "brand": BRANDS[i % 4],
        "sku": f"{BRANDS[i % 4][:3].upper()}-{i:05d}",
        "price": float(i % 100),
        "tags": ["sale"] if i % 3 == 0 else ["new"],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    data_dir = tmp_path_factory.mktemp("hybrid")
    with ServerThread(
        lambda: create_server(IndexSettings(port=0, data_dir=data_dir)), name="index"
    ) as thread:
        yield thread


@pytest.fixture
def client(server):
    with IndexClient(server.address) as client:
        yield client


@pytest.fixture
def shop(client, request):
    """N products, 2 images each (items p<i>#0, p<i>#1 in group p<i>), over 3 shards."""
    name = f"shop{next(_NAMES)}"
    client.create_collection(name, D, num_shards=3, schema=SCHEMA)
    rng = np.random.default_rng(5)
    ids = [f"p{i}#{j}" for i in range(N) for j in range(2)]
    metadata = [_metadata(i) for i in range(N) for _ in range(2)]
    client.upsert(
        name,
        ids,
        rng.standard_normal((2 * N, D)).astype(np.float32),
        metadata,
        groups=[i.split("#")[0] for i in ids],
    )
    return name


_NAMES = itertools.count()


def _query(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
@pytest.mark.parametrize(
    ("where", "matches"),
    [
        ({"price": {"lt": 2}}, lambda m: m["price"] < 2),  # 2 % of the items
        ({"brand": "kestrel"}, lambda m: m["brand"] == "Kestrel"),  # 25 %, case-insensitive field
        ({"tags": {"in": ["sale"]}}, lambda m: "sale" in m["tags"]),
        ({"price": {"gte": 0}}, lambda m: True),
    ],
)
def test_filters_apply_inside_both_sides_and_pages_are_full(client, shop, mode, where, matches) -> None:
    total = sum(matches(_metadata(i)) for i in range(N)) * 2
    vectors = None if mode == "keyword" else _query()[None, :]
    for text, k in [("red dress", 7), ("kestrel", 25), ("zzzz qqqq", 5), ("blue hat sale", 60)]:
        [hits] = client.search_batch(shop, vectors, texts=[text], mode=mode, k=k, filter=where)
        assert all(matches(h.metadata) for h in hits), (text, where)
        assert len({h.id for h in hits}) == len(hits)
        if mode == "hybrid":  # the vector side alone fills the page: exactly k whenever k items match
            assert len(hits) == min(k, total), (text, where)
        else:  # keyword: only items holding a query word
            holding = [
                i for i in range(N) if matches(_metadata(i)) and set(text.split()) & _words(_metadata(i))
            ]
            assert len(hits) == min(k, 2 * len(holding)), (text, where)


def _words(metadata: dict) -> set[str]:
    return {w.lower() for w in " ".join([metadata["title"], metadata["brand"], *metadata["tags"]]).split()}


def test_keyword_finds_typos_skus_and_brands_first(client, shop) -> None:
    [hit] = client.keyword_search(shop, _metadata(42)["sku"], k=1, explain=True)
    assert hit.id.startswith("p42#") and hit.explanation.boosted and hit.explanation.exact_fields == ("sku",)
    hits = client.keyword_search(shop, "rde dres", k=5, explain=True)
    assert all(h.metadata["title"] == "red dress" for h in hits)
    assert "rde→red" in hits[0].explanation.matched_terms
    hits = client.search(shop, _query(), mode="hybrid", texts=["umbra tshirt"], k=5, explain=True)
    assert all(h.metadata["brand"] == "Umbra" and h.metadata["title"].endswith("t-shirt") for h in hits)
    e = hits[0].explanation
    assert e.vector_score is not None and e.keyword_score is not None and e.fused_score == hits[0].score
    # A SKU typed whole comes first in hybrid too (boosted), whatever the vector says.
    [first, *_] = client.search(shop, _query(9), mode="hybrid", texts=["HAL-00123"], k=3)
    assert first.id.startswith("p123#")
    unboosted = HybridOptions(boost_exact=False, vector_weight=1.0, keyword_weight=0.0001)
    plain = client.search(shop, _query(9), mode="hybrid", texts=["HAL-00123"], k=3, hybrid=unboosted)
    assert plain[0].id == client.search(shop, _query(9), k=1)[0].id


def test_products_come_once_after_fusion(client, shop) -> None:
    for mode in ("keyword", "hybrid"):
        vectors = None if mode == "keyword" else _query()[None, :]
        [hits] = client.search_batch(shop, vectors, texts=["green scarf"], mode=mode, k=10, group_size=2)
        assert len(hits) == 10 and len({h.group for h in hits}) == 10
        assert all(1 <= len(h.group_hits) <= 2 and h.group_hits[0].id == h.id for h in hits)
        assert all(g.group == h.group for h in hits for g in h.group_hits)
        [page2] = client.search_batch(
            shop, vectors, texts=["green scarf"], mode=mode, k=10, offset=10, group_size=2
        )
        assert not {h.group for h in hits} & {h.group for h in page2}


def test_rrf_and_weighted_both_fuse(client, shop) -> None:
    for fusion in ("weighted", "rrf"):
        hits = client.search(
            shop, _query(), mode="hybrid", texts=["black sneakers"], k=10, hybrid=HybridOptions(fusion=fusion)
        )
        assert len(hits) == 10 and hits[0].metadata["title"] == "black sneakers"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_deletes_and_updates_reach_both_sides(client, shop) -> None:
    vector = _query(3)
    client.upsert(
        shop, ["odd#0"], vector[None, :], [{"title": "velvet cape", "brand": "Nimbus", "sku": "NIM-1"}]
    )
    assert [h.id for h in client.keyword_search(shop, "velvet cape")] == ["odd#0"]
    client.update_metadata(shop, ["odd#0"], set={"title": "linen apron"})
    assert client.keyword_search(shop, "velvet cape") == []
    assert [h.id for h in client.keyword_search(shop, "linen apron")] == ["odd#0"]
    [hit] = client.search(shop, vector, mode="hybrid", texts=["linen apron"], k=1)
    assert hit.id == "odd#0" and hit.metadata["title"] == "linen apron"
    client.update_metadata(shop, filter={"sku": "NIM-1"}, set={"title": "wool poncho"})
    assert [h.id for h in client.keyword_search(shop, "poncho")] == ["odd#0"]
    client.delete(shop, ["odd#0"])
    assert client.keyword_search(shop, "poncho") == [] and client.keyword_search(shop, "NIM-1") == []
    assert all(h.id != "odd#0" for h in client.search(shop, vector, mode="hybrid", texts=["poncho"], k=20))
    client.delete(shop, filter={"brand": "umbra"})
    assert client.keyword_search(shop, "umbra", k=50) == []


def test_schema_growth_and_restart_keep_the_keyword_side(tmp_path) -> None:
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    settings = IndexSettings(port=0, data_dir=tmp_path)
    vectors = np.random.default_rng(2).standard_normal((3, D)).astype(np.float32)
    with (
        ServerThread(lambda: create_server(settings), name="index") as thread,
        IndexClient(thread.address) as c,
    ):
        c.create_collection("grow", D, schema=Schema((Field("price", FieldType.FLOAT),)))
        c.upsert("grow", ["a", "b"], vectors[:2], [{"price": 1.0}, {"price": 2.0}])
        with pytest.raises(FailedPreconditionError, match="no text or keyword fields"):
            c.keyword_search("grow", "plum")
        assert (
            len(c.search("grow", _query(), mode="hybrid", texts=["plum"], k=2)) == 2
        )  # vector, as documented
        c.add_fields("grow", [Field("name", FieldType.TEXT)])
        c.upsert(
            "grow",
            ["a", "b"],
            vectors[:2],
            [{"price": 1.0, "name": "Orange bag"}, {"price": 2.0, "name": "Plum coat"}],
        )
        assert [h.id for h in c.keyword_search("grow", "plum")] == ["b"]
        # A collection without a schema gets one from its first write, the keyword side with it.
        c.create_collection("inferred", D)
        c.upsert("inferred", ["x"], vectors[2:], [{"label": "Teal umbrella"}])
        assert [h.id for h in c.keyword_search("inferred", "umbrella")] == ["x"]
    with (
        ServerThread(lambda: create_server(settings), name="index") as thread,
        IndexClient(thread.address) as c,
    ):
        assert [h.id for h in c.keyword_search("grow", "orange")] == ["a"]
        c.upsert("grow", ["c"], vectors[2:], [{"name": "Plum scarf"}])
        assert sorted(h.id for h in c.keyword_search("grow", "plum")) == ["b", "c"]
        assert [h.id for h in c.keyword_search("inferred", "teal")] == ["x"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(mode=index_pb2.SEARCH_MODE_KEYWORD), "texts"),
        (dict(mode=index_pb2.SEARCH_MODE_HYBRID, texts=["a", "b"]), "texts"),
        (dict(mode=index_pb2.SEARCH_MODE_KEYWORD, texts=["x" * 5000]), "texts[0]"),
        (
            dict(mode=index_pb2.SEARCH_MODE_KEYWORD, texts=["x"], hybrid=index_pb2.HybridParams(depth=10**6)),
            "hybrid.depth",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_HYBRID,
                texts=["x"],
                hybrid=index_pb2.HybridParams(vector_weight=-1),
            ),
            "hybrid.vector_weight",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_HYBRID,
                texts=["x"],
                hybrid=index_pb2.HybridParams(keyword_weight=float("inf")),
            ),
            "hybrid.keyword_weight",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_HYBRID,
                texts=["x"],
                hybrid=index_pb2.HybridParams(rank_constant=float("nan")),
            ),
            "hybrid.rank_constant",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_HYBRID,
                texts=["x"],
                hybrid=index_pb2.HybridParams(vector_weight=0, keyword_weight=0),
            ),
            "hybrid.vector_weight",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_KEYWORD,
                texts=["x"],
                hybrid=index_pb2.HybridParams(field_weights={"colour": 2}),
            ),
            "hybrid.field_weights[colour]",
        ),
        (
            dict(
                mode=index_pb2.SEARCH_MODE_KEYWORD,
                texts=["x"],
                hybrid=index_pb2.HybridParams(field_weights={"title": -2}),
            ),
            "hybrid.field_weights[title]",
        ),
        (
            dict(mode=index_pb2.SEARCH_MODE_KEYWORD, texts=["x"], hybrid=index_pb2.HybridParams(fusion=7)),
            "hybrid.fusion",
        ),
        (dict(mode=9, texts=["x"]), "mode"),
    ],
)
def test_careless_requests_are_refused_naming_the_field(server, shop, change, field) -> None:
    request = index_pb2.SearchRequest(collection=shop, k=5, **change)
    if change.get("mode") == index_pb2.SEARCH_MODE_HYBRID:
        request.queries.add().float32_le = _query().astype("<f4").tobytes()
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            index_pb2_grpc.IndexServiceStub(channel).Search(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


def test_sdk_refuses_a_mode_it_does_not_know(client, shop) -> None:
    with pytest.raises(InvalidArgumentError, match="mode"):
        client.search(shop, _query(), mode="semantic", texts=["x"])
    with pytest.raises(InvalidArgumentError, match="texts"):
        client.search_batch(shop, None, mode="keyword", texts="red dress")
