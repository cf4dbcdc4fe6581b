"""Every number a caller sends the index has a documented upper bound; this module holds them.

One request must not be able to make the server allocate without limit. The bounds are
checked where a request enters the core (:class:`~index_service.collection.Collection`, or
the cluster before it fans out), so each has one owner (docs/architecture.md). The ones an
operator may need to change are flags of ``clipsearch serve index`` (index_service/settings.py);
docs/reliability.md lists them all with their defaults.

No gRPC here (the core's rule); the filter shape check reads the protobuf message only to
measure it, before the recursive conversion runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clipsearch.errors import InvalidArgumentError
from clipsearch.schema import MAX_FIELD_NAME_BYTES, Schema

#: Hits per query (the contract: SearchRequest.k is 1 to 10000).
MAX_K = 10_000
#: Hits one grouped search keeps per group (GroupBy.size).
MAX_GROUP_SIZE = 100
#: Best hits skipped before the page (pagination).
MAX_OFFSET = 10_000
#: Query vectors in one SearchRequest.
MAX_QUERIES = 1024
#: HNSW's candidate list: FAISS allocates per call in proportion to it; beyond k it buys nothing.
MAX_EF_SEARCH = 10_000
#: IVF lists probed; the largest number of lists an index spec may declare (index_service/specs.py).
MAX_NPROBE = 65_536
#: Nesting of all/any/negate in one filter.
MAX_FILTER_DEPTH = 32
#: Conditions plus compared values in one filter (each is one pass over a shard's rows).
MAX_FILTER_TERMS = 1024


@dataclass(frozen=True)
class IndexLimits:
    """The bounds an operator may change (flags of ``clipsearch serve index``); defaults here."""

    #: Items in one Upsert, ids in one Get or Delete.
    max_batch_items: int = 10_000
    #: queries x (k + offset) of one search: its candidates per shard are held in memory at once.
    max_search_hits: int = 100_000
    #: Fields in a collection's schema, and in one item's metadata (a collection without schema).
    #: Every field costs every row a column slot for the collection's lifetime.
    max_fields: int = 128
    #: UTF-8 bytes of one string value; a keywords list counts the bytes of all its strings.
    max_value_bytes: int = 16 * 1024
    #: Strings in one keywords (list) value.
    max_list_values: int = 256
    #: One item's metadata as stored (compact JSON), kept in memory for every live row.
    max_metadata_bytes: int = 64 * 1024


DEFAULT_LIMITS = IndexLimits()


def check_search(k: int, offset: int, queries: int, ef_search: int, nprobe: int, limits: IndexLimits) -> None:
    """The numbers of a search request; errors name the field and its bound."""
    if not 1 <= k <= MAX_K:
        raise InvalidArgumentError(f"k must be in [1, {MAX_K}], got {k}", field="k")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgumentError(f"offset must be in [0, {MAX_OFFSET}], got {offset}", field="offset")
    for name, value, high in (("ef_search", ef_search, MAX_EF_SEARCH), ("nprobe", nprobe, MAX_NPROBE)):
        if not 0 <= value <= high:
            raise InvalidArgumentError(
                f"params.{name} must be in [0, {high}] (0: the index's default), got {value}",
                field=f"params.{name}",
            )
    if not 1 <= queries <= MAX_QUERIES:
        raise InvalidArgumentError(
            f"queries: send 1 to {MAX_QUERIES} query vectors, got {queries}", field="queries"
        )
    hits = queries * (k + offset)
    if hits > limits.max_search_hits:
        raise InvalidArgumentError(
            f"queries x (k + offset) is {queries} x {k + offset} = {hits}, over this server's limit of "
            f"{limits.max_search_hits} (--max-search-hits): send fewer queries per call or ask for "
            "fewer hits",
            field="queries" if queries > 1 else "k",
        )


def check_batch(count: int, field: str, limits: IndexLimits) -> None:
    """Items (or ids) in one write or read call."""
    if count > limits.max_batch_items:
        raise InvalidArgumentError(
            f"{field}: {count} in one call, over this server's limit of {limits.max_batch_items} "
            "(--max-batch-items); send them in several calls",
            field=field,
        )


def check_metadata(metadata: Sequence[Mapping[str, Any]], limits: IndexLimits, where: str = "items") -> None:
    """Fields per item, bytes per value, strings per list: before any of it is stored or inferred."""
    for i, values in enumerate(metadata):
        spot = f"{where}[{i}].metadata"
        if len(values) > limits.max_fields:
            raise InvalidArgumentError(
                f"{spot}: {len(values)} fields, over this server's limit of {limits.max_fields} "
                "(--max-fields)",
                field=spot,
            )
        for key, value in values.items():
            if (
                _utf8_size(key) > MAX_FIELD_NAME_BYTES
            ):  # a schema refuses it anyway; one made before schemas did not
                raise InvalidArgumentError(
                    f"{spot}: field names are at most {MAX_FIELD_NAME_BYTES} bytes", field=spot
                )
            if isinstance(value, (list, tuple)):
                if len(value) > limits.max_list_values:
                    raise InvalidArgumentError(
                        f"{spot}.{key}: a list of {len(value)} values, over this server's limit of "
                        f"{limits.max_list_values} (--max-list-values)",
                        field=f"{spot}.{key}",
                    )
                size = sum(_utf8_size(v) for v in value if isinstance(v, str))
            elif isinstance(value, str):
                size = _utf8_size(value)
            else:
                continue
            if size > limits.max_value_bytes:
                raise InvalidArgumentError(
                    f"{spot}.{key}: a value of {size} bytes, over this server's limit of "
                    f"{limits.max_value_bytes} (--max-value-bytes)",
                    field=f"{spot}.{key}",
                )


def check_stored_metadata(encoded: Sequence[str], limits: IndexLimits, where: str = "items") -> None:
    """One item's metadata as it is stored and held in memory (compact JSON)."""
    for i, text in enumerate(encoded):
        size = _utf8_size(text)
        if size > limits.max_metadata_bytes:
            spot = f"{where}[{i}].metadata"
            raise InvalidArgumentError(
                f"{spot}: {size} bytes of metadata, over this server's limit of "
                f"{limits.max_metadata_bytes} (--max-metadata-bytes)",
                field=spot,
            )


def check_schema(schema: Schema | None, limits: IndexLimits, where: str = "schema") -> None:
    """A collection's schema (declared, grown by AddFields or inferred from a first write)."""
    if schema is not None and len(schema.fields) > limits.max_fields:
        raise InvalidArgumentError(
            f"{where}: {len(schema.fields)} fields, over this server's limit of {limits.max_fields} "
            "(--max-fields): every field costs every item memory for the collection's lifetime",
            field=where,
        )


def check_filter_shape(message: Any, where: str = "filter") -> None:
    """Depth and size of a ``clipsearch.v1.Filter`` message, before it is converted (recursively)."""
    terms = 0
    stack = [(message, where, 1)]
    while stack:
        node, spot, depth = stack.pop()
        if depth > MAX_FILTER_DEPTH:
            raise InvalidArgumentError(
                f"{spot}: filters nest at most {MAX_FILTER_DEPTH} levels deep", field=spot
            )
        kind = node.WhichOneof("kind")
        if kind == "negate":
            stack.append((node.negate, f"{spot}.negate", depth + 1))
        elif kind in ("all", "any"):
            children = getattr(node, kind).filters
            terms += 1
            stack.extend(
                (child, f"{spot}.{kind}.filters[{i}]", depth + 1) for i, child in enumerate(children)
            )
        elif kind == "condition":
            condition = node.condition
            test = condition.WhichOneof("test")
            terms += 1 + (len(getattr(condition, test).values) if test in ("in", "contains_all") else 0)
        if terms > MAX_FILTER_TERMS:
            raise InvalidArgumentError(
                f"{where}: more than {MAX_FILTER_TERMS} conditions and values in one filter", field=where
            )


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
