"""SearchService (the gateway) over real gRPC, in front of the real pair."""

from __future__ import annotations

import csv

import grpc
import pytest
from harness import ServerThread

from clipsearch.apps.gateway.server import create_server
from clipsearch.apps.gateway.settings import GatewaySettings
from clipsearch.health import wait_until_serving
from clipsearch.v1 import encoder_pb2, index_pb2, search_pb2, search_pb2_grpc, types_pb2

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def gateway(pair):
    settings = GatewaySettings(port=0, encoder=pair.encoder, index=pair.index)
    with ServerThread(lambda: create_server(settings), name="gateway") as running:
        with grpc.insecure_channel(running.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield running, search_pb2_grpc.SearchServiceStub(channel)


def _options(**kwargs) -> search_pb2.SearchOptions:
    return search_pb2.SearchOptions(collection="gateway_e2e", **kwargs)


def _stream(small_catalog, extra=()):
    rows = list(csv.DictReader(small_catalog.open()))
    items = [
        search_pb2.IngestItem(
            id=row["id"],
            image=(small_catalog.parent / row["image"]).read_bytes(),
            metadata={"title": types_pb2.MetadataValue(string_value=row["title"])},
        )
        for row in rows
    ]
    yield search_pb2.IngestRequest(collection="gateway_e2e", items=items[:20])
    yield search_pb2.IngestRequest(items=items[20:] + list(extra))


def test_ingest_stream_then_every_search(gateway, pair, small_catalog) -> None:
    running, stub = gateway
    wait_until_serving(running.address, timeout_s=30)  # SERVING once both upstream services are
    from clipsearch import SearchClient

    with SearchClient(pair.encoder, pair.index) as client:
        client.create_collection("gateway_e2e", exist_ok=True)
    bad = search_pb2.IngestItem(id="broken", image=b"\x89PNG\r\n\x1a\n truncated")
    response = stub.Ingest(_stream(small_catalog, [bad]), timeout=60)
    assert response.ingested == 40 and response.skipped == 0
    assert [(f.id, f.code) for f in response.failures] == [
        ("broken", grpc.StatusCode.INVALID_ARGUMENT.value[0])
    ]
    assert stub.Ingest(_stream(small_catalog), timeout=60).skipped == 40

    rows = list(csv.DictReader(small_catalog.open()))
    image = (small_catalog.parent / rows[2]["image"]).read_bytes()
    by_image = stub.SearchImage(search_pb2.SearchImageRequest(image=image, options=_options(k=3)), timeout=10)
    assert by_image.hits[0].id == rows[2]["id"] and by_image.hits[0].metadata["title"].string_value
    by_text = stub.SearchText(
        search_pb2.SearchTextRequest(text="a red dress", options=_options(k=4)), timeout=10
    )
    assert len(by_text.hits) == 4
    parts = [
        search_pb2.WeightedInput(input=encoder_pb2.EmbedInput(image=image), weight=1.0),
        search_pb2.WeightedInput(input=encoder_pb2.EmbedInput(text="striped"), weight=-0.5),
    ]
    hybrid = stub.SearchHybrid(search_pb2.SearchHybridRequest(parts=parts, options=_options(k=5)), timeout=10)
    assert len(hybrid.hits) == 5
    similar = stub.MoreLikeThis(
        search_pb2.MoreLikeThisRequest(id=rows[2]["id"], options=_options(k=5)), timeout=10
    )
    assert rows[2]["id"] not in {h.id for h in similar.hits} and len(similar.hits) == 5
    price_filter = index_pb2.Filter(
        condition=index_pb2.FieldCondition(
            field="title", equals=types_pb2.MetadataValue(string_value=rows[0]["title"])
        )
    )
    filtered = stub.SearchText(
        search_pb2.SearchTextRequest(text="x", options=_options(k=40, filter=price_filter)), timeout=10
    )
    assert {h.id for h in filtered.hits} == {r["id"] for r in rows if r["title"] == rows[0]["title"]}


@pytest.mark.parametrize(
    ("call", "request_message", "code", "field"),
    [
        ("SearchText", search_pb2.SearchTextRequest(text="", options=_options()), "INVALID_ARGUMENT", "text"),
        ("SearchText", search_pb2.SearchTextRequest(text="x"), "INVALID_ARGUMENT", "options.collection"),
        (
            "SearchText",
            search_pb2.SearchTextRequest(text="x", options=search_pb2.SearchOptions(collection="nope")),
            "NOT_FOUND",
            None,
        ),
        ("MoreLikeThis", search_pb2.MoreLikeThisRequest(id="ghost", options=_options()), "NOT_FOUND", None),
        (
            "SearchImage",
            search_pb2.SearchImageRequest(image=b"nope", options=_options()),
            "INVALID_ARGUMENT",
            None,
        ),
    ],
)
def test_errors_keep_codes_and_fields(gateway, call, request_message, code, field) -> None:
    from clipsearch._calls import from_rpc_error

    _, stub = gateway
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_message, timeout=10)
    assert caught.value.code().name == code
    if field is not None:
        assert from_rpc_error(caught.value).field == field


def test_deadline_is_honored(gateway) -> None:
    _, stub = gateway
    with pytest.raises(grpc.RpcError) as caught:
        stub.SearchText(search_pb2.SearchTextRequest(text="a hat", options=_options()), timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"params": index_pb2.SearchParams(ef_search=1_000_000_000)}, "options.params.ef_search"),
        ({"params": index_pb2.SearchParams(nprobe=2**31 - 1)}, "options.params.nprobe"),
        ({"k": 10_001}, "options.k"),
        ({"offset": 10_001}, "options.offset"),
    ],
)
def test_unbounded_knobs_are_refused_before_any_work(gateway, pair, options, field) -> None:
    """The gateway used to forward ``ef_search = 1e9`` unchanged (after embedding the text)."""
    from clipsearch._calls import from_rpc_error

    _, stub = gateway
    before = pair.encoder_thread.server.metrics.snapshot().requests
    with pytest.raises(grpc.RpcError) as caught:
        stub.SearchText(search_pb2.SearchTextRequest(text="a hat", options=_options(**options)), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).field == field
    assert pair.encoder_thread.server.metrics.snapshot().requests == before, "the encoder did work for it"


def test_hybrid_parts_are_bounded(gateway) -> None:
    from clipsearch._calls import from_rpc_error

    _, stub = gateway
    text = encoder_pb2.EmbedInput(text="a hat")
    cases = [
        ([search_pb2.WeightedInput(input=text, weight=float("nan"))], "parts[0].weight"),
        ([search_pb2.WeightedInput(input=text, weight=float("inf"))], "parts[0].weight"),
        ([search_pb2.WeightedInput(input=text)] * 65, "parts"),
    ]
    for parts, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.SearchHybrid(search_pb2.SearchHybridRequest(parts=parts, options=_options()), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(caught.value).field == field


def test_searches_return_products_with_their_items(gateway, pair) -> None:
    """Items sharing a group come back once, as products, unless the caller asks for items."""
    from clipsearch import IndexClient, SearchClient

    _, stub = gateway
    with SearchClient(pair.encoder, pair.index) as client, IndexClient(pair.index) as index:
        client.create_collection("gateway_groups", exist_ok=True)
        vectors = client.encoder.embed_texts(["a red dress", "a red dress, back", "a blue hat"])
        index.upsert(
            "gateway_groups",
            ["dress", "dress#2", "hat"],
            vectors,
            model_fingerprint=client.model.fingerprint,
            groups=["dress", "dress", "hat"],
        )
    options = search_pb2.SearchOptions(collection="gateway_groups", k=2, group_size=2)
    grouped = stub.SearchText(search_pb2.SearchTextRequest(text="a red dress", options=options), timeout=10)
    assert [h.group for h in grouped.hits] == ["dress", "hat"]
    assert [[h.id for h in g.hits] for g in grouped.groups] == [["dress", "dress#2"], ["hat"]]
    items = search_pb2.SearchOptions(collection="gateway_groups", k=2, ungrouped=True)
    plain = stub.SearchText(search_pb2.SearchTextRequest(text="a red dress", options=items), timeout=10)
    assert [h.id for h in plain.hits] == ["dress", "dress#2"] and not plain.groups
    like_hat = stub.MoreLikeThis(search_pb2.MoreLikeThisRequest(id="hat", options=options), timeout=10)
    assert [[h.id for h in g.hits] for g in like_hat.groups] == [["dress", "dress#2"]]
    too_big = search_pb2.SearchOptions(collection="gateway_groups", group_size=101)
    with pytest.raises(grpc.RpcError) as refused:
        stub.SearchText(search_pb2.SearchTextRequest(text="x", options=too_big), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.group_size" in refused.value.details()


@pytest.fixture(scope="module")
def catalog_rows(gateway, pair, small_catalog) -> list[dict]:
    """The small catalog ingested as `clipsearch ingest` does: title, brand, SKU, description."""
    from clipsearch import SearchClient

    with SearchClient(pair.encoder, pair.index) as client:
        client.create_collection("gateway_hybrid", exist_ok=True)
        client.ingest(small_catalog, collection="gateway_hybrid")
    return list(csv.DictReader(small_catalog.open()))


def _text(stub, text: str, **options):
    request = search_pb2.SearchTextRequest(
        text=text, options=search_pb2.SearchOptions(collection="gateway_hybrid", **options)
    )
    return stub.SearchText(request, timeout=30)


def test_text_queries_are_hybrid_by_default_and_explained(gateway, catalog_rows) -> None:
    """A lower-cased SKU finds its product first with the default mode (auto: hybrid), in
    keyword mode and with RRF; `explain` says why, and only when asked."""
    _, stub = gateway
    row = catalog_rows[7]
    sku = row["sku"].lower()
    plain = _text(stub, sku, k=3)
    assert plain.hits[0].id == row["id"] and not plain.hits[0].HasField("explanation")
    for mode in (
        index_pb2.SEARCH_MODE_UNSPECIFIED,
        index_pb2.SEARCH_MODE_HYBRID,
        index_pb2.SEARCH_MODE_KEYWORD,
    ):
        first = _text(stub, sku, k=3, mode=mode, explain=True).hits[0]
        assert first.id == row["id"], mode
        why = first.explanation
        assert list(why.exact_fields) == ["sku"] and why.boosted and why.keyword_rank == 1, mode
    rrf = index_pb2.HybridParams(fusion=index_pb2.FUSION_METHOD_RRF, keyword_weight=2.0)
    assert _text(stub, sku, k=3, hybrid=rrf, explain=True).hits[0].id == row["id"]
    vector = _text(stub, sku, k=3, mode=index_pb2.SEARCH_MODE_VECTOR, explain=True)
    assert len(vector.hits) == 3 and not any(h.explanation.matched_terms for h in vector.hits)
    image = search_pb2.WeightedInput(input=encoder_pb2.EmbedInput(text=f"{row['brand']} {row['category']}"))
    mixed = stub.SearchHybrid(
        search_pb2.SearchHybridRequest(
            parts=[image], options=search_pb2.SearchOptions(collection="gateway_hybrid", k=5, explain=True)
        ),
        timeout=30,
    )
    assert mixed.hits[0].explanation.matched_terms, "a query with words is hybrid by default"


@pytest.mark.parametrize(
    ("call", "options", "field"),
    [
        ("SearchImage", {"mode": index_pb2.SEARCH_MODE_KEYWORD}, "options.mode"),
        ("SearchText", {"mode": 99}, "options.mode"),
        ("SearchText", {"hybrid": index_pb2.HybridParams(vector_weight=-1)}, "options.hybrid.vector_weight"),
        ("SearchText", {"hybrid": index_pb2.HybridParams(fusion=7)}, "options.hybrid.fusion"),
        ("SearchText", {"hybrid": index_pb2.HybridParams(depth=10**6)}, "options.hybrid.depth"),
        (
            "SearchText",
            {"hybrid": index_pb2.HybridParams(field_weights={"nope": 2.0})},
            "options.hybrid.field_weights[nope]",
        ),
    ],
)
def test_bad_search_modes_and_fusion_name_the_field(
    gateway, catalog_rows, small_catalog, call, options, field
):
    from clipsearch._calls import from_rpc_error

    _, stub = gateway
    opts = search_pb2.SearchOptions(collection="gateway_hybrid", **options)
    if call == "SearchImage":
        image = (small_catalog.parent / catalog_rows[0]["image"]).read_bytes()
        request = search_pb2.SearchImageRequest(image=image, options=opts)
    else:
        request = search_pb2.SearchTextRequest(text="a red dress", options=opts)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).field == field
