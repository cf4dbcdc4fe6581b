"""Every RPC and error code over real gRPC on loopback (raw stubs, as any language's client)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import index_pb2, types_pb2
from clipsearch.wire import metadata_from_proto, metadata_to_proto, vector_from_proto, vector_to_proto

pytestmark = pytest.mark.functional

C = grpc.StatusCode


def _config(name="items", dimension=4, **kwargs):
    return index_pb2.CollectionConfig(name=name, dimension=dimension, **kwargs)


def _item(item_id, vector, **metadata):
    return index_pb2.Item(id=item_id, vector=vector_to_proto(vector), metadata=metadata_to_proto(metadata))


def _error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return from_rpc_error(info.value)


def _expect(call, request, code, field=None, text=None):
    error = _error(call, request)
    assert error.code.name == code.name, error
    if field is not None:
        assert error.field == field, error
    if text is not None:
        assert text in error.message, error.message
    return error


def test_health_and_collections_lifecycle(server):
    health = health_pb2_grpc.HealthStub(server.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="clipsearch.v1.IndexService"), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = server.stub
    created = stub.CreateCollection(
        index_pb2.CreateCollectionRequest(
            config=_config(num_shards=2, model_fingerprint="m1", model_name="tiny")
        )
    ).collection
    assert created.config.metric == index_pb2.METRIC_COSINE and created.config.index_spec == "Flat"
    assert [s.shard for s in created.shards] == [0, 1] and created.item_count == 0
    again = index_pb2.CreateCollectionRequest(
        config=_config(num_shards=2, model_fingerprint="m1"), exist_ok=True
    )
    assert stub.CreateCollection(again).collection.config.name == "items"
    _expect(stub.CreateCollection, index_pb2.CreateCollectionRequest(config=_config()), C.ALREADY_EXISTS)
    other = index_pb2.CreateCollectionRequest(config=_config(num_shards=3), exist_ok=True)
    _expect(stub.CreateCollection, other, C.ALREADY_EXISTS, text="other settings")
    listed = stub.ListCollections(index_pb2.ListCollectionsRequest()).collections
    assert [c.config.name for c in listed] == ["items"]
    described = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="items")).collection
    assert described.config.model_fingerprint == "m1"
    _expect(stub.DescribeCollection, index_pb2.DescribeCollectionRequest(collection="nope"), C.NOT_FOUND)
    assert stub.DropCollection(index_pb2.DropCollectionRequest(collection="items")).dropped
    _expect(stub.DropCollection, index_pb2.DropCollectionRequest(collection="items"), C.NOT_FOUND)
    assert not stub.DropCollection(
        index_pb2.DropCollectionRequest(collection="items", missing_ok=True)
    ).dropped


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (_config(name=""), "config.name"),
        (_config(name="has space"), "config.name"),
        (_config(name="x" * 65), "config.name"),
        (_config(dimension=0), "config.dimension"),
        (_config(num_shards=-1), "config.num_shards"),
        (_config(num_shards=1000), "config.num_shards"),
        (_config(metric=9), "config.metric"),
        (_config(index_spec="IVF16,PQ3"), "config.index_spec"),
    ],
)
def test_bad_collection_settings(server, config, field):
    _expect(
        server.stub.CreateCollection,
        index_pb2.CreateCollectionRequest(config=config),
        C.INVALID_ARGUMENT,
        field,
    )


def test_upsert_get_delete_search(server):
    stub = server.stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=_config(num_shards=3, model_fingerprint="m1"))
    )
    eye = np.eye(4, dtype=np.float32)
    items = [
        _item(f"p{i}", eye[i] * (i + 1), color="red" if i % 2 else "blue", price=i, new=i == 3)
        for i in range(4)
    ]
    written = stub.Upsert(index_pb2.UpsertRequest(collection="items", items=items, model_fingerprint="m1"))
    assert written.upserted == 4 and written.sequence == 1
    retry = stub.Upsert(index_pb2.UpsertRequest(collection="items", items=items))
    assert retry.upserted == 4 and retry.sequence == 1  # idempotent: nothing changed
    got = stub.Get(index_pb2.GetRequest(collection="items", ids=["p3", "p0"], include_vectors=True)).items
    assert [i.id for i in got] == ["p3", "p0"]
    assert metadata_from_proto(got[0].metadata) == {"color": "red", "price": 3, "new": True}
    np.testing.assert_allclose(vector_from_proto(got[0].vector), eye[3])  # cosine: stored normalized
    assert not stub.Get(index_pb2.GetRequest(collection="items", ids=["p1"])).items[0].HasField("vector")
    error = _expect(stub.Get, index_pb2.GetRequest(collection="items", ids=["p1", "zz", "yy"]), C.NOT_FOUND)
    assert "'zz'" in error.message and "'yy'" in error.message
    partial = stub.Get(
        index_pb2.GetRequest(collection="items", ids=["zz", "p2", "p0"], missing_ok=True)
    ).items
    assert [i.id for i in partial] == ["p2", "p0"]

    queries = [vector_to_proto(eye[1]), vector_to_proto(eye[1] + eye[2] * 0.5)]
    results = stub.Search(index_pb2.SearchRequest(collection="items", queries=queries, k=2)).results
    # p0, p2 and p3 tie at 0 for the first query: the older item wins.
    assert [[h.id for h in r.hits] for r in results] == [["p1", "p0"], ["p1", "p2"]]
    assert results[0].hits[0].score == pytest.approx(1.0)
    assert metadata_from_proto(results[0].hits[0].metadata)["color"] == "red"
    red = index_pb2.Filter(
        condition=index_pb2.FieldCondition(field="color", equals=types_pb2.MetadataValue(string_value="red"))
    )
    filtered = stub.Search(index_pb2.SearchRequest(collection="items", queries=queries[:1], k=10, filter=red))
    assert sorted(h.id for h in filtered.results[0].hits) == ["p1", "p3"]
    page = stub.Search(index_pb2.SearchRequest(collection="items", queries=queries[:1], k=2, offset=3))
    assert len(page.results[0].hits) == 1

    deleted = stub.Delete(index_pb2.DeleteRequest(collection="items", ids=["p1", "p1", "unknown"]))
    assert deleted.deleted == 1 and deleted.sequence == 2
    assert stub.Delete(index_pb2.DeleteRequest(collection="items", ids=["p1"])).deleted == 0
    after = stub.Search(index_pb2.SearchRequest(collection="items", queries=queries[:1], k=10)).results[0]
    assert "p1" not in {h.id for h in after.hits} and len(after.hits) == 3
    info = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="items")).collection
    assert info.item_count == 3 and sum(s.item_count for s in info.shards) == 3


def test_metrics_l2_and_inner_product_scores(server):
    stub = server.stub
    for name, metric in (("l2", index_pb2.METRIC_L2), ("ip", index_pb2.METRIC_INNER_PRODUCT)):
        stub.CreateCollection(
            index_pb2.CreateCollectionRequest(config=_config(name=name, dimension=2, metric=metric))
        )
        items = [_item("a", np.array([1, 0], np.float32)), _item("b", np.array([3, 4], np.float32))]
        stub.Upsert(index_pb2.UpsertRequest(collection=name, items=items))
        query = [vector_to_proto(np.array([1, 1], np.float32))]
        hits = stub.Search(index_pb2.SearchRequest(collection=name, queries=query, k=2)).results[0].hits
        got = [(h.id, h.score) for h in hits]
        assert got == ([("a", -1.0), ("b", -13.0)] if name == "l2" else [("b", 7.0), ("a", 1.0)])


def _bad_item_requests():
    good = np.ones(4, np.float32)
    nan = good.copy()
    nan[2] = np.nan
    return [
        ([_item("a", good), _item("b", np.ones(3, np.float32))], "items[1].vector", C.INVALID_ARGUMENT),
        ([_item("a", good), _item("b", good), _item("c", nan)], "items[2].vector", C.INVALID_ARGUMENT),
        ([_item("a", good), _item("", good)], "items[1].id", C.INVALID_ARGUMENT),
        ([_item("x" * 513, good)], "items[0].id", C.INVALID_ARGUMENT),
        ([_item("a", np.zeros(4, np.float32))], "items[0].vector", C.INVALID_ARGUMENT),
        (
            [index_pb2.Item(id="a", vector=types_pb2.Vector(float32_le=b"abc"))],
            "items[0].vector",
            C.INVALID_ARGUMENT,
        ),
        (
            [index_pb2.Item(id="a", vector=vector_to_proto(good), metadata={"k": types_pb2.MetadataValue()})],
            "items[0].metadata.k",
            C.INVALID_ARGUMENT,
        ),
    ]


@pytest.mark.parametrize(("items", "field", "code"), _bad_item_requests())
def test_bad_upserts_name_the_field_and_write_nothing(server, items, field, code):
    stub = server.stub
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=_config()))
    _expect(stub.Upsert, index_pb2.UpsertRequest(collection="items", items=items), code, field)
    info = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="items")).collection
    assert info.item_count == 0


def test_search_errors(server):
    stub = server.stub
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=_config(model_fingerprint="m1")))
    q = [vector_to_proto(np.ones(4, np.float32))]

    def search(**kwargs):
        return index_pb2.SearchRequest(**{"collection": "items", "queries": q, "k": 5, **kwargs})

    def cond(**kwargs):
        return index_pb2.Filter(condition=index_pb2.FieldCondition(**kwargs))

    string = types_pb2.MetadataValue(string_value="x")
    cases = [
        (search(k=0), "k"),
        (search(k=10_001), "k"),
        (search(offset=-1), "offset"),
        (search(queries=[]), "queries"),
        (search(queries=[q[0], vector_to_proto(np.ones(5, np.float32))]), "queries[1]"),
        (search(queries=[vector_to_proto(np.array([1, np.inf, 0, 0], np.float32))]), "queries[0]"),
        (search(params=index_pb2.SearchParams(ef_search=-1)), "params.ef_search"),
        (search(filter=index_pb2.Filter()), "filter"),
        (search(filter=cond(equals=string)), "filter.condition.field"),
        (search(filter=cond(field="f")), "filter.condition"),
        (search(filter=cond(field="f", range=index_pb2.Range())), "filter.condition.range"),
        (search(filter=cond(field="f", range=index_pb2.Range(gt=float("nan")))), "filter.condition.range.gt"),
        (search(filter=cond(field="f", equals=types_pb2.MetadataValue())), "filter.condition.equals"),
        (search(filter=cond(field="f", **{"in": index_pb2.ValueList()})), "filter.condition.in.values"),
        (
            search(
                filter=index_pb2.Filter(
                    all=index_pb2.FilterList(filters=[cond(field="f", equals=string), cond(equals=string)])
                )
            ),
            "filter.all.filters[1].condition.field",
        ),
        (search(filter=index_pb2.Filter(any=index_pb2.FilterList())), "filter.any.filters"),
        (search(filter=index_pb2.Filter(negate=index_pb2.Filter())), "filter.negate"),
    ]
    for request, field in cases:
        _expect(stub.Search, request, C.INVALID_ARGUMENT, field)
    _expect(stub.Search, search(collection="nope"), C.NOT_FOUND, "collection")
    _expect(stub.Search, search(collection="bad name"), C.INVALID_ARGUMENT, "collection")
    _expect(stub.Search, search(model_fingerprint="m2"), C.FAILED_PRECONDITION)
    assert len(stub.Search(search(model_fingerprint="m1")).results) == 1
    assert len(stub.Search(search()).results) == 1  # untagged requests are allowed
    item = _item("a", np.ones(4, np.float32))
    _expect(
        stub.Upsert,
        index_pb2.UpsertRequest(collection="items", items=[item], model_fingerprint="m2"),
        C.FAILED_PRECONDITION,
    )
    _expect(stub.Upsert, index_pb2.UpsertRequest(collection="nope", items=[item]), C.NOT_FOUND)
    _expect(stub.Delete, index_pb2.DeleteRequest(collection="nope", ids=["a"]), C.NOT_FOUND)
    _expect(stub.Delete, index_pb2.DeleteRequest(collection="items", ids=[""]), C.INVALID_ARGUMENT, "ids[0]")
    _expect(stub.Get, index_pb2.GetRequest(collection="nope", ids=["a"]), C.NOT_FOUND)


def test_data_survives_a_graceful_restart(server):
    stub = server.stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=_config(num_shards=2, index_spec="HNSW16"))
    )
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 4)).astype(np.float32)
    items = [_item(f"g{i}", v, n=i) for i, v in enumerate(vectors)]
    stub.Upsert(index_pb2.UpsertRequest(collection="items", items=items))
    stub.Delete(index_pb2.DeleteRequest(collection="items", ids=["g0", "g1"]))
    request = index_pb2.SearchRequest(
        collection="items", queries=[vector_to_proto(v) for v in vectors[:5]], k=5
    )
    before = stub.Search(request)
    server.restart()
    after = server.stub.Search(request)
    assert after == before
    info = server.stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="items")).collection
    assert info.item_count == 198 and info.config.index_spec == "HNSW16"


def test_reflection_lists_the_service(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "clipsearch.v1.IndexService" in names
