"""What one request may ask of the index, over real gRPC: every number has an upper bound.

The issue (hardening, items 1 and 6): ``params.ef_search = 1e9`` grew an HNSW index's
process to 4.4 GiB and kept allocating after the caller's deadline; 1024 queries with
k = offset = 10000 took 3.7 GB and more than a minute here; one item with 1,000 metadata
fields made every later row cost ~8x; a 5 MiB string value was accepted. Each bound is
refused with INVALID_ARGUMENT naming the field, before any work is done, and the server
keeps serving. The bounds (and their flags) are in docs/reliability.md.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import index_pb2, types_pb2
from clipsearch.wire import metadata_to_proto, vector_to_proto
from index_service import limits

pytestmark = pytest.mark.functional

DIM = 8


def _vector(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def _item(item_id: str, seed: int = 0, **metadata) -> index_pb2.Item:
    return index_pb2.Item(
        id=item_id, vector=vector_to_proto(_vector(seed)), metadata=metadata_to_proto(metadata)
    )


def _refused(call, request, field: str):
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    error = from_rpc_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.field == field, error
    return error


@pytest.fixture
def hnsw(server):
    stub = server.stub
    config = index_pb2.CollectionConfig(name="h", dimension=DIM, index_spec="HNSW16")
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config), timeout=30)
    stub.Upsert(
        index_pb2.UpsertRequest(collection="h", items=[_item(f"p{i}", i) for i in range(50)]), timeout=30
    )
    return stub


def _search(**fields) -> index_pb2.SearchRequest:
    queries = fields.pop("queries", 1)
    params = {name: fields.pop(name) for name in ("ef_search", "nprobe") if name in fields}
    return index_pb2.SearchRequest(
        collection="h",
        queries=[vector_to_proto(_vector(q)) for q in range(queries)],
        k=fields.pop("k", 5),
        params=index_pb2.SearchParams(**params),
        **fields,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ef_search": 1_000_000_000}, "params.ef_search"),
        ({"ef_search": limits.MAX_EF_SEARCH + 1}, "params.ef_search"),
        ({"ef_search": -1}, "params.ef_search"),
        ({"nprobe": 2**31 - 1}, "params.nprobe"),
        ({"nprobe": limits.MAX_NPROBE + 1}, "params.nprobe"),
        ({"k": limits.MAX_K + 1}, "k"),
        ({"k": 0}, "k"),
        ({"offset": limits.MAX_OFFSET + 1}, "offset"),
        ({"queries": limits.MAX_QUERIES + 1}, "queries"),
        # 1024 queries x (10000 + 10000) candidates: 3.7 GB and over a minute before the bound.
        ({"queries": 1024, "k": 10_000, "offset": 10_000}, "queries"),
        ({"queries": 11, "k": 10_000}, "queries"),
    ],
)
def test_every_search_number_has_an_upper_bound(hnsw, fields, field) -> None:
    _refused(hnsw.Search, _search(**fields), field)
    # The largest allowed values still work, and the server kept serving.
    ok = _search(ef_search=limits.MAX_EF_SEARCH, nprobe=limits.MAX_NPROBE, k=10, queries=10)
    assert len(hnsw.Search(ok, timeout=30).results) == 10


def test_the_hits_bound_is_the_operators(server_with) -> None:
    stub = server_with(max_search_hits=10_000).stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="h", dimension=DIM)),
        timeout=30,
    )
    stub.Upsert(index_pb2.UpsertRequest(collection="h", items=[_item("a")]), timeout=30)
    assert stub.Search(_search(k=10_000), timeout=30).results
    error = _refused(stub.Search, _search(k=5_001, queries=2), "queries")
    assert "--max-search-hits" in error.message


def test_batches_are_bounded(server_with) -> None:
    stub = server_with(max_batch_items=3).stub
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(config=index_pb2.CollectionConfig(name="b", dimension=DIM)),
        timeout=30,
    )
    three = [_item(f"i{n}", n) for n in range(3)]
    assert stub.Upsert(index_pb2.UpsertRequest(collection="b", items=three), timeout=30).upserted == 3
    four = [*three, _item("i4")]
    error = _refused(stub.Upsert, index_pb2.UpsertRequest(collection="b", items=four), "items")
    assert "--max-batch-items" in error.message
    ids = ["i0", "i1", "i2", "i4"]
    _refused(stub.Get, index_pb2.GetRequest(collection="b", ids=ids, missing_ok=True), "ids")
    _refused(stub.Delete, index_pb2.DeleteRequest(collection="b", ids=ids), "ids")
    assert len(stub.Get(index_pb2.GetRequest(collection="b", ids=ids[:3]), timeout=30).items) == 3


def test_filters_are_bounded_in_depth_and_size(hnsw) -> None:
    condition = index_pb2.Filter(
        condition=index_pb2.FieldCondition(field="color", equals=types_pb2.MetadataValue(string_value="red"))
    )
    deep = condition
    for _ in range(limits.MAX_FILTER_DEPTH):
        deep = index_pb2.Filter(negate=deep)
    error = _refused(hnsw.Search, _search(filter=deep), "filter" + ".negate" * limits.MAX_FILTER_DEPTH)
    assert "nest" in error.message
    values = [types_pb2.MetadataValue(string_value=f"c{n}") for n in range(limits.MAX_FILTER_TERMS + 1)]
    wide = index_pb2.Filter(
        condition=index_pb2.FieldCondition(field="color", **{"in": index_pb2.ValueList(values=values)})
    )
    _refused(hnsw.Search, _search(filter=wide), "filter")


# -- metadata (item 6) --------------------------------------------------------------------------


def _create(stub, name: str, **config) -> None:
    stub.CreateCollection(
        index_pb2.CreateCollectionRequest(
            config=index_pb2.CollectionConfig(name=name, dimension=DIM, **config)
        ),
        timeout=30,
    )


def test_metadata_values_and_fields_are_bounded(server) -> None:
    stub = server.stub
    _create(stub, "m")
    defaults = limits.DEFAULT_LIMITS
    huge = "x" * (5 * 1024 * 1024)  # the 5 MiB string
    upsert = index_pb2.UpsertRequest
    error = _refused(
        stub.Upsert, upsert(collection="m", items=[_item("a", title=huge)]), "items[0].metadata.title"
    )
    assert "--max-value-bytes" in error.message
    just_over = "é" * (defaults.max_value_bytes // 2 + 1)  # bytes, not characters, count
    _refused(
        stub.Upsert, upsert(collection="m", items=[_item("a", title=just_over)]), "items[0].metadata.title"
    )
    tags = [f"t{n}" for n in range(defaults.max_list_values + 1)]
    error = _refused(
        stub.Upsert, upsert(collection="m", items=[_item("a", tags=tags)]), "items[0].metadata.tags"
    )
    assert "--max-list-values" in error.message
    long_tags = ["y" * 4096] * 5  # few, but 20 KiB together
    _refused(
        stub.Upsert, upsert(collection="m", items=[_item("a", tags=long_tags)]), "items[0].metadata.tags"
    )
    many = {f"f{n}": n for n in range(1000)}  # the 1,000 fields
    error = _refused(stub.Upsert, upsert(collection="m", items=[_item("a", **many)]), "items[0].metadata")
    assert "--max-fields" in error.message
    # Nothing of it was stored and the collection has no schema yet; the largest allowed item goes in.
    described = stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="m"), timeout=30)
    assert described.collection.item_count == 0 and not described.collection.config.schema.fields
    fine = {f"f{n}": "z" * 100 for n in range(defaults.max_fields)}
    assert stub.Upsert(upsert(collection="m", items=[_item("a", **fine)]), timeout=30).upserted == 1


def test_an_items_stored_metadata_is_bounded(server_with) -> None:
    stub = server_with(max_metadata_bytes=1000).stub
    _create(stub, "s")
    fields = {f"f{n}": "v" * 100 for n in range(10)}  # each value fine, together over 1000 bytes
    error = _refused(
        stub.Upsert,
        index_pb2.UpsertRequest(collection="s", items=[_item("a", **fields)]),
        "items[0].metadata",
    )
    assert "--max-metadata-bytes" in error.message


def test_a_schema_cannot_grow_past_the_field_bound(server_with) -> None:
    stub = server_with(max_fields=4).stub

    def schema(n: int, prefix: str = "f") -> index_pb2.Schema:
        return index_pb2.Schema(
            fields=[
                index_pb2.FieldSchema(name=f"{prefix}{i}", type=index_pb2.FIELD_TYPE_KEYWORD)
                for i in range(n)
            ]
        )

    error = _refused(
        stub.CreateCollection,
        index_pb2.CreateCollectionRequest(
            config=index_pb2.CollectionConfig(name="c", dimension=DIM, schema=schema(5))
        ),
        "config.schema",
    )
    assert "--max-fields" in error.message
    _create(stub, "c", schema=schema(3))
    _refused(
        stub.AddFields, index_pb2.AddFieldsRequest(collection="c", fields=schema(2, "g").fields), "fields"
    )
    stub.AddFields(index_pb2.AddFieldsRequest(collection="c", fields=schema(1, "g").fields), timeout=30)
    # A first write infers a schema from all its items: their fields together count.
    _create(stub, "inferred")
    items = [_item(f"i{n}", n, **{f"f{n}a": "x", f"f{n}b": "y"}) for n in range(3)]  # 2 each, 6 together
    _refused(stub.Upsert, index_pb2.UpsertRequest(collection="inferred", items=items), "items")
    described = stub.DescribeCollection(
        index_pb2.DescribeCollectionRequest(collection="inferred"), timeout=30
    )
    assert not described.collection.config.schema.fields and described.collection.item_count == 0


def test_stored_strings_are_bounded(server) -> None:
    """What a collection stores and every ListCollections returns: the model strings, field names."""
    stub = server.stub
    for name, size in (("model_name", 257), ("model_fingerprint", 129), ("model_pretrained", 1025)):
        config = index_pb2.CollectionConfig(name="s", dimension=DIM, **{name: "x" * size})
        _refused(stub.CreateCollection, index_pb2.CreateCollectionRequest(config=config), f"config.{name}")
    _create(stub, "s")
    key = "k" * 129
    _refused(
        stub.Upsert,
        index_pb2.UpsertRequest(collection="s", items=[_item("a", **{key: "v"})]),
        "items[0].metadata",
    )
