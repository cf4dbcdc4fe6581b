"""``clipsearch.v1`` messages <-> the core's plain values (protobuf only, no gRPC).

Shared by the gRPC servicer and any other transport that speaks the same messages. Every
error names the request field at fault, e.g. ``filter.all.filters[1].condition.field``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

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
from index_service import filters, hybrid, limits
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


#: Hit wire bytes holding only a row's metadata, by the row's stored JSON: building the
#: metadata map was most of a response's cost (~10 us a hit of 5 fields, ~3 us with these).
_metadata_wire: dict[str, bytes] = {}
_metadata_wire_bytes = 0
#: Bytes of serialized metadata kept at most; the whole cache is dropped when it would grow past.
METADATA_WIRE_CACHE_BYTES = 8 << 20


def add_hits(hits: Iterable[Hit], into: RepeatedCompositeFieldContainer[index_pb2.Hit]) -> None:
    """Appends ``hits`` to a repeated Hit field; metadata of stored rows comes from the cache."""
    global _metadata_wire_bytes
    for hit in hits:
        stored = hit.stored_metadata
        if not stored or hit.explanation is not None:
            into.append(hit_to_proto(hit))
            continue
        wire = _metadata_wire.get(stored)
        if wire is None:
            wire = index_pb2.Hit(metadata=metadata_to_proto(hit.metadata)).SerializeToString()
            size = len(wire) + len(stored)  # the key is held too
            if size <= METADATA_WIRE_CACHE_BYTES // 64:  # a huge row is built each time
                if _metadata_wire_bytes + size > METADATA_WIRE_CACHE_BYTES:
                    _metadata_wire.clear()
                    _metadata_wire_bytes = 0
                _metadata_wire[stored] = wire
                # Unlocked: a lost update under a thread switch only lets the count lag one
                # entry until the next clear.
                _metadata_wire_bytes += size
        message = into.add()
        message.MergeFromString(wire)
        message.id = hit.id
        message.score = hit.score
        message.group = hit.group


def hit_to_proto(hit: Hit) -> index_pb2.Hit:
    message = index_pb2.Hit(
        id=hit.id, score=hit.score, metadata=metadata_to_proto(hit.metadata), group=hit.group
    )
    e = hit.explanation
    if e is not None:
        x = message.explanation
        x.fused_score = e.fused_score
        x.matched_terms.extend(e.matched_terms)
        x.exact_fields.extend(e.exact_fields)
        x.boosted = e.boosted
        if e.vector_score is not None:
            x.vector_score = e.vector_score
        if e.keyword_score is not None:
            x.keyword_score = e.keyword_score
        if e.vector_rank is not None:
            x.vector_rank = e.vector_rank
        if e.keyword_rank is not None:
            x.keyword_rank = e.keyword_rank
    return message


def text_query_from_proto(request: index_pb2.SearchRequest) -> hybrid.TextQuery | None:
    """The keyword part of a search (None: a vector search); errors name the request field."""
    if request.mode in (index_pb2.SEARCH_MODE_UNSPECIFIED, index_pb2.SEARCH_MODE_VECTOR):
        return None
    if request.mode not in (index_pb2.SEARCH_MODE_KEYWORD, index_pb2.SEARCH_MODE_HYBRID):
        raise InvalidArgumentError(f"mode: unknown search mode {request.mode}", field="mode")
    h = request.hybrid
    if h.fusion not in (
        index_pb2.FUSION_METHOD_UNSPECIFIED,
        index_pb2.FUSION_METHOD_WEIGHTED,
        index_pb2.FUSION_METHOD_RRF,
    ):
        raise InvalidArgumentError(f"hybrid.fusion: unknown fusion method {h.fusion}", field="hybrid.fusion")
    if len(h.field_weights) > limits.MAX_FILTER_TERMS:
        raise InvalidArgumentError(
            f"hybrid.field_weights: at most {limits.MAX_FILTER_TERMS} entries", field="hybrid.field_weights"
        )
    fusion = hybrid.fusion_params(
        weighted=h.fusion != index_pb2.FUSION_METHOD_RRF,
        vector_weight=h.vector_weight if h.HasField("vector_weight") else None,
        keyword_weight=h.keyword_weight if h.HasField("keyword_weight") else None,
        rank_constant=h.rank_constant if h.HasField("rank_constant") else None,
        boost_exact=h.boost_exact if h.HasField("boost_exact") else None,
    )
    return hybrid.TextQuery(
        mode=hybrid.SearchMode(request.mode),
        texts=tuple(request.texts),
        fusion=fusion,
        depth=h.depth,
        field_weights=dict(h.field_weights),
        explain=request.explain,
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
    result = index_pb2.QueryResult()
    add_hits((g.hits[0] for g in groups), result.hits)
    for g in groups:
        add_hits(g.hits, result.groups.add(group=g.group).hits)
    return result


def search_response(results: list, *, grouped: bool) -> index_pb2.SearchResponse:
    """Each query's page: hits, or groups (products) with their best hit in ``hits`` too."""
    if grouped:
        return index_pb2.SearchResponse(results=[groups_to_proto(groups) for groups in results])
    response = index_pb2.SearchResponse()
    for hits in results:
        add_hits(hits, response.results.add().hits)
    return response


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
