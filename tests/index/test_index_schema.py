"""A collection's schema: set by the first write or declared, enforced on writes and filters."""

from __future__ import annotations

import numpy as np
import pytest
from legacy_collections import legacy_collection

from clipsearch.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError
from clipsearch.schema import Field, FieldType, Schema
from index_service.config import CollectionConfig
from index_service.filters import ContainsAll, Equals, In, Range

pytestmark = pytest.mark.unit

D = 4


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def _ids(found) -> list[str]:
    return sorted(h.id for h in found[0])


SHOP = Schema(
    (
        Field("sku", FieldType.KEYWORD),
        Field("category", FieldType.KEYWORD, case_insensitive=True),
        Field("title", FieldType.TEXT),
        Field("stock", FieldType.INTEGER),
        Field("price", FieldType.FLOAT, currency="USD"),
        Field("on_sale", FieldType.BOOLEAN),
        Field("tags", FieldType.KEYWORDS, case_insensitive=True),
    )
)


@pytest.fixture
def shop(engine):
    engine.create_collection(CollectionConfig("shop", D, num_shards=2, schema=SHOP))
    collection = engine.collection("shop")
    items = [
        {
            "sku": "0042",
            "category": "Hat",
            "title": "Red hat",
            "stock": 3,
            "price": 16.99,
            "tags": ["red", "Summer"],
        },
        {"sku": "42", "category": "hat", "title": "Blue hat", "stock": 0, "price": 9.5, "on_sale": True},
        {"sku": "A-1", "category": "Dress", "title": "Dress", "price": 120.0, "tags": ["red", "evening"]},
    ]
    collection.upsert(["p0042", "p42", "pA1"], _vectors(3), items)
    return collection


def test_a_declared_schema_is_kept_and_described(engine, shop) -> None:
    assert engine.collection("shop").info().config.schema == SHOP
    assert engine.list_collections()[0].config.schema == SHOP


@pytest.mark.parametrize(
    ("metadata", "field", "words"),
    [
        ({"price": "$16.99"}, "items[1].metadata.price", "float field"),
        ({"stock": 1.5}, "items[1].metadata.stock", "integer field"),
        ({"on_sale": "yes"}, "items[1].metadata.on_sale", "boolean field"),
        ({"tags": "red"}, "items[1].metadata.tags", "keywords field"),
        ({"sku": 42}, "items[1].metadata.sku", "keyword field"),
        ({"colour": "red"}, "items[1].metadata.colour", "unknown field 'colour'"),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_item_and_field(shop, metadata, field, words) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        shop.upsert(["ok", "bad"], _vectors(2, 1), [{"sku": "x"}, metadata])
    assert caught.value.field == field and words in caught.value.message
    assert shop.get(["ok"], missing_ok=True) == []  # nothing of the call was written


def test_integer_fields_store_integers(shop) -> None:
    shop.upsert(["n"], _vectors(1, 2), [{"stock": 7.0}])
    [item] = shop.get(["n"])
    assert item.metadata["stock"] == 7 and isinstance(item.metadata["stock"], int)


def test_keyword_filters_match_exactly_or_ignoring_case(shop) -> None:
    query = _vectors(1, 3)
    assert _ids(shop.search(query, 10, filter_=Equals("sku", "42"))) == ["p42"]
    assert _ids(shop.search(query, 10, filter_=Equals("sku", "0042"))) == ["p0042"]
    assert _ids(shop.search(query, 10, filter_=Equals("category", "HAT"))) == ["p0042", "p42"]
    assert _ids(shop.search(query, 10, filter_=In("category", ("dress",)))) == ["pA1"]
    assert _ids(shop.search(query, 10, filter_=Range("price", lt=100))) == ["p0042", "p42"]


def test_tags_match_any_or_all(shop) -> None:
    query = _vectors(1, 4)
    assert _ids(shop.search(query, 10, filter_=Equals("tags", "RED"))) == ["p0042", "pA1"]
    assert _ids(shop.search(query, 10, filter_=In("tags", ("summer", "evening")))) == ["p0042", "pA1"]
    assert _ids(shop.search(query, 10, filter_=ContainsAll("tags", ("red", "summer")))) == ["p0042"]
    [item] = shop.get(["p0042"])
    assert item.metadata["tags"] == ["red", "Summer"]  # stored as written


@pytest.mark.parametrize(
    ("filter_", "field", "words"),
    [
        (Equals("colour", "red", "filter"), "filter.field", "the collection's fields are: category"),
        (Range("category", lt=3, where="filter"), "filter.range", "a range compares numbers"),
        (Equals("price", "cheap", "filter"), "filter.equals", "'price' is a float field"),
        (Equals("sku", 42, "filter"), "filter.equals", "'sku' is a keyword field"),
        (ContainsAll("category", ("hat",), "filter"), "filter.contains_all", "tests lists"),
    ],
)
def test_filters_are_checked_against_the_schema(shop, filter_, field, words) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        shop.search(_vectors(1), 10, filter_=filter_)
    assert caught.value.field == field and words in caught.value.message, caught.value.message


def test_the_first_write_sets_the_schema_from_its_values(engine) -> None:
    engine.create_collection(CollectionConfig("inferred", D))
    collection = engine.collection("inferred")
    assert collection.schema is None
    collection.upsert(["a"], _vectors(1), [{"price": 3, "name": "x", "new": True, "tags": ["t"]}])
    assert collection.schema == Schema(
        (
            Field("name", FieldType.KEYWORD),
            Field("new", FieldType.BOOLEAN),
            Field("price", FieldType.FLOAT),
            Field("tags", FieldType.KEYWORDS),
        )
    )
    with pytest.raises(InvalidArgumentError, match="'price' is a float field"):
        collection.upsert(["b"], _vectors(1), [{"price": "$3"}])


def test_one_write_cannot_give_a_field_two_types(engine) -> None:
    engine.create_collection(CollectionConfig("conflict", D))
    with pytest.raises(InvalidArgumentError) as caught:
        engine.collection("conflict").upsert(["a", "b"], _vectors(2), [{"v": "1"}, {"v": 1}])
    assert caught.value.field == "items[1].metadata.v"


def test_the_schema_survives_a_restart(open_engine) -> None:
    engine = open_engine()
    engine.create_collection(CollectionConfig("kept", D, schema=SHOP))
    engine.collection("kept").upsert(["a"], _vectors(1), [{"category": "Hat"}])
    engine.close()
    reopened = open_engine().collection("kept")
    assert reopened.schema == SHOP
    assert _ids(reopened.search(_vectors(1), 5, filter_=Equals("category", "hat"))) == ["a"]


def test_add_fields_grows_the_schema_but_never_changes_a_type(shop) -> None:
    info = shop.add_fields([Field("brand", FieldType.KEYWORD, case_insensitive=True)])
    assert info.config.schema is not None and info.config.schema.get("brand") is not None
    shop.upsert(["b"], _vectors(1), [{"brand": "Maison"}])
    assert _ids(shop.search(_vectors(1), 10, filter_=Equals("brand", "MAISON"))) == ["b"]
    with pytest.raises(InvalidArgumentError, match="cannot become"):
        shop.add_fields([Field("price", FieldType.KEYWORD)])


def test_a_collection_made_before_schemas_keeps_working_and_can_get_one(open_engine) -> None:
    """The migration: old collections are schemaless until AddFields, which reads their items."""
    legacy = legacy_collection(open_engine, "old", D, [{"color": "red", "price": 3}, {"color": "Blue"}, {}])
    assert legacy.schema is None
    assert _ids(legacy.search(_vectors(1), 5, filter_=Equals("color", "red"))) == ["m0"]
    legacy.upsert(["more"], _vectors(1), [{"color": 5}])  # no schema: still unchecked, as before
    with pytest.raises(InvalidArgumentError, match="the fields items hold are: color, price"):
        legacy.search(_vectors(1), 5, filter_=Equals("colour", "red"))
    with pytest.raises(FailedPreconditionError, match="color holds float and keyword values"):
        legacy.add_fields([])
    legacy.delete(["more"])
    info = legacy.add_fields([Field("tags", FieldType.KEYWORDS)])
    assert info.config.schema == Schema(
        (
            Field("color", FieldType.KEYWORD),
            Field("price", FieldType.FLOAT),
            Field("tags", FieldType.KEYWORDS),
        )
    )
    with pytest.raises(InvalidArgumentError, match="'color' is a keyword field"):
        legacy.upsert(["x"], _vectors(1), [{"color": 5}])


def test_exist_ok_compares_only_the_settings_given(engine) -> None:
    engine.create_collection(CollectionConfig("products", D, num_shards=2, index_spec="Flat"))
    engine.create_collection(CollectionConfig("products", D), exist_ok=True)  # unspecified: fine
    with pytest.raises(AlreadyExistsError) as caught:
        engine.create_collection(
            CollectionConfig("products", D, num_shards=3, index_spec="HNSW32"), exist_ok=True
        )
    message = caught.value.message
    assert "num_shards is 2 (asked: 3)" in message and "index_spec is 'Flat' (asked: 'HNSW32')" in message


def test_content_keys_are_stored_apart_from_the_metadata(engine) -> None:
    engine.create_collection(CollectionConfig("keyed", D))
    collection = engine.collection("keyed")
    vectors = _vectors(1)
    first = collection.upsert(["a"], vectors, [{"x": "1"}], content_keys=["sha256:aa"])
    [item] = collection.get(["a"])
    assert item.content_key == "sha256:aa" and item.metadata == {"x": "1"}
    again = collection.upsert(["a"], vectors, [{"x": "1"}], content_keys=["sha256:aa"])
    assert again.sequence == first.sequence  # identical: nothing written
    changed = collection.upsert(["a"], vectors, [{"x": "1"}], content_keys=["sha256:bb"])
    assert changed.sequence > first.sequence and collection.get(["a"])[0].content_key == "sha256:bb"
