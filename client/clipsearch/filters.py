"""Metadata filters as plain dicts, turned into ``clipsearch.v1.Filter`` messages.

    {"category": "dress"}                          equality
    {"color": {"in": ["red", "blue"]}}             in-list (a bare list means the same)
    {"price": {"gte": 10, "lt": 50}}               numeric range (gt, gte, lt, lte)
    {"tags": {"contains_all": ["wool", "summer"]}} a list field holds every one of the values
    {"category": "dress", "price": {"lt": 50}}     several keys: all must hold
    {"$or": [{...}, {...}]}, {"$and": [...]}, {"$not": {...}}

A ready ``Filter`` message passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clipsearch.errors import InvalidArgumentError
from clipsearch.v1 import index_pb2
from clipsearch.wire import metadata_value_to_proto

FilterSpec = Mapping[str, Any] | index_pb2.Filter
_RANGE_KEYS = {"gt", "gte", "lt", "lte"}


def build_filter(spec: FilterSpec | None) -> index_pb2.Filter | None:
    if spec is None:
        return None
    if isinstance(spec, index_pb2.Filter):
        return spec
    return _build(spec, "filter")


def _build(spec: Any, where: str) -> index_pb2.Filter:
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidArgumentError(f"{where}: expected a non-empty mapping, got {spec!r}", field=where)
    parts = [_build_key(key, value, f"{where}.{key}") for key, value in spec.items()]
    if len(parts) == 1:
        return parts[0]
    return index_pb2.Filter(all=index_pb2.FilterList(filters=parts))


def _build_key(key: str, value: Any, where: str) -> index_pb2.Filter:
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise InvalidArgumentError(f"{where}: expected a non-empty list of filters", field=where)
        children = [_build(child, f"{where}[{i}]") for i, child in enumerate(value)]
        group = index_pb2.FilterList(filters=children)
        return index_pb2.Filter(all=group) if key == "$and" else index_pb2.Filter(any=group)
    if key == "$not":
        return index_pb2.Filter(negate=_build(value, where))
    if key.startswith("$"):
        raise InvalidArgumentError(f"{where}: unknown operator {key!r} (use $and, $or, $not)", field=where)
    return index_pb2.Filter(condition=_condition(key, value, where))


def _condition(field_name: str, value: Any, where: str) -> index_pb2.FieldCondition:
    if isinstance(value, list):
        value = {"in": value}
    if not isinstance(value, Mapping):
        return index_pb2.FieldCondition(field=field_name, equals=metadata_value_to_proto(value, field=where))
    if set(value) in ({"in"}, {"contains_all"}):
        [test] = value
        if not isinstance(value[test], (list, tuple)) or not value[test]:
            raise InvalidArgumentError(f"{where}.{test}: expected a non-empty list", field=f"{where}.{test}")
        values = [metadata_value_to_proto(v, field=where) for v in value[test]]
        # "in" is a Python keyword, so only **kwargs can pass it; mypy matches the dict to every parameter.
        return index_pb2.FieldCondition(
            field=field_name,
            **{test: index_pb2.ValueList(values=values)},  # type: ignore[arg-type]
        )
    unknown = set(value) - _RANGE_KEYS
    if unknown or not value:
        raise InvalidArgumentError(
            f"{where}: expected 'in', 'contains_all' or range bounds {sorted(_RANGE_KEYS)}, "
            f"got {sorted(value)}",
            field=where,
        )
    bounds = {}
    for bound, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise InvalidArgumentError(
                f"{where}.{bound}: range bounds must be numbers", field=f"{where}.{bound}"
            )
        bounds[bound] = float(number)
    return index_pb2.FieldCondition(field=field_name, range=index_pb2.Range(**bounds))
