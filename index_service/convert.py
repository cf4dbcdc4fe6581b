"""``clipsearch.v1`` messages <-> the core's plain values (protobuf only, no gRPC).

Shared by the gRPC servicer and any other transport that speaks the same messages. Every
error names the request field at fault, e.g. ``filter.all.filters[1].condition.field``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from clipsearch.errors import InvalidArgumentError
from clipsearch.v1 import index_pb2, types_pb2
from clipsearch.wire import (
    metadata_to_proto,
    metadata_value_from_proto,
    schema_from_proto,
    schema_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from index_service import filters, limits
from index_service.config import (
    CollectionConfig,
    CollectionInfo,
    Hit,
    HitGroup,
    MetadataValue,
    Metric,
    StoredItem,
)
from index_service.planner import Plan


def config_from_proto(message: index_pb2.CollectionConfig) -> CollectionConfig:
    if message.metric and message.metric not in Metric.__members__.values():
        raise InvalidArgumentError(f"config.metric: unknown metric {message.metric}", field="config.metric")
    return CollectionConfig(
        name=message.name,
        dimension=message.dimension,
        metric=Metric(message.metric),
        num_shards=message.num_shards,
        index_spec=message.index_spec,
        model_fingerprint=message.model_fingerprint,
        model_name=message.model_name,
        schema=schema_from_proto(message.schema, "config.schema") if message.HasField("schema") else None,
        model_pretrained=message.model_pretrained,
    )


def info_to_proto(info: CollectionInfo) -> index_pb2.CollectionInfo:
    c = info.config
    return index_pb2.CollectionInfo(
        config=index_pb2.CollectionConfig(
            name=c.name,
            dimension=c.dimension,
            # The generated stub only admits the enum wrapper or a name; protobuf takes the int.
            metric=cast(index_pb2.Metric, int(c.metric)),
            num_shards=c.num_shards,
            index_spec=c.index_spec,
            model_fingerprint=c.model_fingerprint,
            model_name=c.model_name,
            schema=schema_to_proto(c.schema) if c.schema is not None else None,
            model_pretrained=c.model_pretrained,
        ),
        item_count=info.item_count,
        shards=[
            index_pb2.ShardInfo(shard=s.shard, item_count=s.item_count, trained=s.trained)
            for s in info.shards
        ],
        quarantine=info.quarantine,
        aliases=list(info.aliases),
    )


def metadata_from_proto(
    entries: Mapping[str, types_pb2.MetadataValue], where: str
) -> dict[str, MetadataValue]:
    result: dict[str, MetadataValue] = {}
    for key, message in entries.items():
        result[key] = _value(message, f"{where}.{key}")
    return result


def _value(message: types_pb2.MetadataValue, where: str) -> MetadataValue:
    value = metadata_value_from_proto(message)
    if value is None:
        raise InvalidArgumentError(f"{where}: the value is unset (string, number or bool)", field=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{where}: numbers must be finite", field=where)
    return value


def _scalar(message: types_pb2.MetadataValue, where: str) -> filters.Value:
    """A value a filter compares with: a string, number or bool (a list field matches any element)."""
    value = _value(message, where)
    if isinstance(value, list):
        raise InvalidArgumentError(
            f"{where}: compare with one string, number or bool (in and contains_all take several)",
            field=where,
        )
    return value


@dataclass(frozen=True)
class Items:
    """The columns of an Upsert's items, in order."""

    ids: list[str]
    vectors: list
    metadata: list[dict[str, MetadataValue]]
    content_keys: list[str]
    groups: list[str]


def items_from_proto(items: list[index_pb2.Item]) -> Items:
    return Items(
        ids=[item.id for item in items],
        vectors=[vector_from_proto(item.vector, field=f"items[{i}].vector") for i, item in enumerate(items)],
        metadata=[metadata_from_proto(item.metadata, f"items[{i}].metadata") for i, item in enumerate(items)],
        content_keys=[item.content_key for item in items],
        groups=[item.group for item in items],
    )


def queries_from_proto(queries: list) -> list:
    return [vector_from_proto(q, field=f"queries[{i}]") for i, q in enumerate(queries)]


def item_to_proto(item: StoredItem) -> index_pb2.Item:
    message = index_pb2.Item(
        id=item.id, metadata=metadata_to_proto(item.metadata), content_key=item.content_key, group=item.group
    )
    if item.vector is not None:
        message.vector.CopyFrom(vector_to_proto(item.vector))
    return message


def hit_to_proto(hit: Hit) -> index_pb2.Hit:
    return index_pb2.Hit(
        id=hit.id, score=hit.score, metadata=metadata_to_proto(hit.metadata), group=hit.group
    )


def plans_to_proto(plans: list[Plan]) -> list[index_pb2.ShardPlan]:
    """Each shard's plan (SearchRequest.explain), by shard."""
    return [
        index_pb2.ShardPlan(
            shard=p.shard,
            strategy=p.strategy,
            reason=p.reason,
            selected=p.selected,
            total=p.total,
            ef_search=p.ef_search,
            nprobe=p.nprobe,
            reranked=p.reranked,
        )
        for p in sorted(plans, key=lambda p: p.shard)
    ]


def groups_to_proto(groups: list[HitGroup]) -> index_pb2.QueryResult:
    """A grouped query's result: each group's best hit in ``hits``, and the groups whole."""
    return index_pb2.QueryResult(
        hits=[hit_to_proto(g.hits[0]) for g in groups],
        groups=[index_pb2.HitGroup(group=g.group, hits=[hit_to_proto(h) for h in g.hits]) for g in groups],
    )


def filter_from_proto(message: index_pb2.Filter, where: str = "filter") -> filters.Filter:
    """The filter tree of ``message``; its depth and size are bounded first (index_service.limits)."""
    limits.check_filter_shape(message, where)
    return _filter(message, where)


def _filter(message: index_pb2.Filter, where: str) -> filters.Filter:
    kind = message.WhichOneof("kind")
    if kind is None:
        raise InvalidArgumentError(f"{where}: empty filter (set condition, all, any or negate)", field=where)
    if kind == "condition":
        return _condition(message.condition, f"{where}.condition")
    if kind == "negate":
        return filters.Not(_filter(message.negate, f"{where}.negate"))
    group = getattr(message, kind).filters
    if not group:
        raise InvalidArgumentError(
            f"{where}.{kind}.filters: needs at least one filter", field=f"{where}.{kind}.filters"
        )
    children = tuple(_filter(child, f"{where}.{kind}.filters[{i}]") for i, child in enumerate(group))
    return filters.All(children) if kind == "all" else filters.AnyOf(children)


def _condition(message: index_pb2.FieldCondition, where: str) -> filters.Filter:
    if not message.field:
        raise InvalidArgumentError(f"{where}.field: name the metadata field to test", field=f"{where}.field")
    test = message.WhichOneof("test")
    if test == "equals":
        return filters.Equals(message.field, _scalar(message.equals, f"{where}.equals"), where)
    if test in ("in", "contains_all"):
        values = getattr(message, test).values
        if not values:
            raise InvalidArgumentError(
                f"{where}.{test}.values: needs at least one value", field=f"{where}.{test}.values"
            )
        parsed = tuple(_scalar(v, f"{where}.{test}.values[{i}]") for i, v in enumerate(values))
        if test == "in":
            return filters.In(message.field, parsed, where)
        if not all(isinstance(v, str) for v in parsed):
            raise InvalidArgumentError(
                f"{where}.contains_all.values: lists hold strings; compare with strings",
                field=f"{where}.contains_all",
            )
        return filters.ContainsAll(message.field, parsed, where)  # type: ignore[arg-type]
    if test == "range":
        bounds = {}
        for name in ("gt", "gte", "lt", "lte"):
            if message.range.HasField(name):
                bound = getattr(message.range, name)
                if math.isnan(bound):
                    raise InvalidArgumentError(f"{where}.range.{name}: NaN", field=f"{where}.range.{name}")
                bounds[name] = bound
        if not bounds:
            raise InvalidArgumentError(f"{where}.range: set at least one bound", field=f"{where}.range")
        return filters.Range(message.field, **bounds, where=where)
    raise InvalidArgumentError(f"{where}: set a test (equals, in, range or contains_all)", field=where)
