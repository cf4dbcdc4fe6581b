"""The page's search parameters: k, page, mode, and filters made from the collection's schema.

Each field of the schema a shopper can filter on is a request parameter, and so a part of
the page's URL (``?q=a+red+dress&category=dress&tags=sale&max_price=50&page=2``):

    keyword    FIELD=value, repeated for any of several values     {"brand": {"in": [...]}}
    keywords   FIELD=tag, repeated: products holding any of them   {"tags": {"in": [...]}}
    boolean    FIELD=true or false
    integer,   min_FIELD=, max_FIELD=                              {"price": {"gte": 10, "lte": 50}}
    float

Text fields (titles, descriptions) are searched, not filtered. ``q``, ``k``, ``id``, ``page``
and ``mode`` are never filters (a field of that name cannot be filtered from the page), and
a parameter that names no field is ignored, so a shared link still opens after a field goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clipsearch.schema import FieldType, Schema

#: Request parameters that are never filters.
RESERVED = frozenset({"q", "k", "id", "page", "mode"})
#: The search modes a text search offers (SearchClient.search's ``mode``): "auto" is hybrid
#: (the picture match fused with the words of the titles, brands and SKUs) on a collection
#: with text fields, else by the picture alone. Picture searches are by the picture.
SEARCH_MODES: tuple[str, ...] = ("auto", "hybrid", "vector", "keyword")
#: Fields never offered as filters: the image's location and old resume bookkeeping.
HIDDEN_FIELDS = frozenset({"image", "content_sha256"})
#: A collection made before schemas gets the filters the page always had.
LEGACY_SCHEMA = Schema.from_dict({"category": "keyword", "price": "float"})
#: The deepest page a link may ask for (the index bounds offsets too).
MAX_PAGE = 100


class ParamError(ValueError):
    """A parameter the page cannot use; the message is shown to the visitor as it is."""


@dataclass(frozen=True)
class FilterField:
    """One filter the page offers: a schema field and the control that fits its type."""

    name: str
    #: "keyword" (values), "keywords" (tags), "boolean" or "range" (numbers).
    kind: str
    #: The ISO 4217 code of a money field ("USD"), else "".
    currency: str = ""
    integer: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "currency": self.currency, "integer": self.integer}


_KINDS = {
    FieldType.KEYWORD: "keyword",
    FieldType.KEYWORDS: "keywords",
    FieldType.BOOLEAN: "boolean",
    FieldType.INTEGER: "range",
    FieldType.FLOAT: "range",
}


def filter_fields(schema: Schema | None) -> list[FilterField]:
    """The filters for a collection's schema, in the order the page shows them: values and tags,
    then yes/no fields, then number ranges (money first); by name within each."""
    fields = [
        FilterField(f.name, _KINDS[f.type], f.currency, f.type == FieldType.INTEGER)
        for f in (schema or LEGACY_SCHEMA).fields
        if f.type in _KINDS and f.name not in HIDDEN_FIELDS and f.name not in RESERVED
    ]
    order = {"keyword": 0, "keywords": 1, "boolean": 2, "range": 3}
    return sorted(fields, key=lambda f: (order[f.kind], not f.currency, f.name))


@dataclass(frozen=True)
class SearchParams:
    """What every search takes: k products per page, which page, the mode and the filters."""

    k: int = 10
    page: int = 1
    mode: str = "auto"
    #: (field, condition in the SDK's filter syntax), in field order.
    conditions: tuple[tuple[str, Any], ...] = ()

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.k

    @classmethod
    def parse(cls, query: Mapping[str, Any], *, max_k: int, schema: Schema | None = None) -> SearchParams:
        """From request parameters (a mapping; repeated ones through its ``getlist`` if it has one).

        ``schema`` is the collection's (None: made before schemas); ParamError names what is wrong.
        """
        k = _number(query, "k", int)
        k = cls.k if k is None else k
        if not 1 <= k <= max_k:
            raise ParamError(f"k must be between 1 and {max_k}, got {k}.")
        page = _number(query, "page", int)
        page = 1 if page is None else page
        if not 1 <= page <= MAX_PAGE:
            raise ParamError(f"page must be between 1 and {MAX_PAGE}, got {page}.")
        mode = (_first(query, "mode") or "auto").lower()
        if mode not in SEARCH_MODES:
            raise ParamError(f"mode must be one of {', '.join(SEARCH_MODES)}; got {mode!r}.")
        conditions = []
        for field in filter_fields(schema):
            condition = _condition(query, field)
            if condition is not None:
                conditions.append((field.name, condition))
        return cls(k=k, page=page, mode=mode, conditions=tuple(conditions))

    def filter(self) -> dict[str, Any] | None:
        """The SDK filter (``clipsearch.filters`` syntax), None when nothing is filtered."""
        return dict(self.conditions) or None


def _condition(query: Mapping[str, Any], field: FilterField) -> Any:
    if field.kind == "range":
        return _range(query, field)
    values = list(dict.fromkeys(v for v in (s.strip() for s in _values(query, field.name)) if v))
    if not values:
        return None
    if field.kind == "boolean":
        if len(values) > 1 or values[0].lower() not in ("true", "false"):
            raise ParamError(f"{field.name} must be true or false, got {', '.join(values)!r}.")
        return values[0].lower() == "true"
    if field.kind == "keywords" or len(values) > 1:
        return {"in": values}
    return values[0]


def _range(query: Mapping[str, Any], field: FilterField) -> dict[str, float] | None:
    low = _number(query, f"min_{field.name}", float)
    high = _number(query, f"max_{field.name}", float)
    if field.currency:
        for bound, value in (("Min", low), ("Max", high)):
            if value is not None and value < 0:
                raise ParamError(f"{bound} {field.name} must not be negative.")
    if low is not None and high is not None and low > high:
        raise ParamError(f"Min {field.name} ({low:g}) is above max {field.name} ({high:g}).")
    bounds = {name: value for name, value in (("gte", low), ("lte", high)) if value is not None}
    return bounds or None


def _values(query: Mapping[str, Any], name: str) -> list[str]:
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        return [str(v) for v in getlist(name)]
    value = query.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _first(query: Mapping[str, Any], name: str) -> str:
    values = _values(query, name)
    return values[0].strip() if values else ""


def _number(query: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    text = _first(query, name)
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ParamError(f"{name} must be a number, got {text!r}.") from None
    if not math.isfinite(value):
        raise ParamError(f"{name} must be a finite number, got {text!r}.")
    return value
