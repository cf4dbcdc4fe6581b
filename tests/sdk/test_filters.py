import pytest

from clipsearch.errors import InvalidArgumentError
from clipsearch.filters import build_filter
from clipsearch.v1 import index_pb2

pytestmark = pytest.mark.unit


def test_none_and_prebuilt_pass_through() -> None:
    assert build_filter(None) is None
    ready = index_pb2.Filter(condition=index_pb2.FieldCondition(field="a"))
    assert build_filter(ready) is ready


def test_equality_in_list_and_range() -> None:
    equality = build_filter({"category": "dress"})
    assert equality.condition.field == "category"
    assert equality.condition.equals.string_value == "dress"

    in_list = build_filter({"color": ["red", "blue"]})
    assert [v.string_value for v in in_list.condition.__getattribute__("in").values] == ["red", "blue"]

    price = build_filter({"price": {"gte": 10, "lt": 50}})
    assert price.condition.range.HasField("gte") and price.condition.range.gte == 10.0
    assert price.condition.range.HasField("lt") and not price.condition.range.HasField("gt")


def test_several_keys_mean_all_and_operators_nest() -> None:
    both = build_filter({"category": "dress", "in_stock": True})
    assert both.WhichOneof("kind") == "all" and len(both.all.filters) == 2
    assert both.all.filters[1].condition.equals.bool_value is True

    nested = build_filter({"$or": [{"color": "red"}, {"$not": {"pattern": "striped"}}]})
    assert nested.WhichOneof("kind") == "any"
    assert nested.any.filters[1].negate.condition.field == "pattern"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "filter"),
        ({"$xor": []}, "filter.$xor"),
        ({"$or": []}, "filter.$or"),
        ({"price": {"lt": "cheap"}}, "filter.price.lt"),
        ({"price": {"between": [1, 2]}}, "filter.price"),
        ({"tags": {"nested": {"x": 1}}}, "filter.tags"),
    ],
)
def test_bad_filters_name_the_field(spec, field) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build_filter(spec)
    assert caught.value.field == field
