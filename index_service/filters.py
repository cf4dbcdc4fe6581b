"""Metadata filters: a small tree of conditions and their evaluation over columns.

A condition tests one field; an item without the field never matches a condition (but does
match its negation: ``Not`` is the plain complement). Evaluation is vectorized over a
shard's :class:`~index_service.rows.RowTable` and yields the selected FAISS labels, which
the shard hands to FAISS as an ``IDSelector`` so the search itself skips everything else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import InvalidArgumentError
from clipsearch.schema import FieldType, Schema

if TYPE_CHECKING:
    from index_service.rows import RowTable

Value = str | float | bool


@dataclass(frozen=True)
class Equals:
    field: str
    value: Value
    #: Where the condition stands in the request, for errors (``filter.all.filters[1].condition``).
    where: str = "filter"


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]
    where: str = "filter"


@dataclass(frozen=True)
class ContainsAll:
    """A list field (keywords) holds every one of ``values``."""

    field: str
    values: tuple[str, ...]
    where: str = "filter"


@dataclass(frozen=True)
class Range:
    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    where: str = "filter"

    def __post_init__(self) -> None:
        bounds = (self.gt, self.gte, self.lt, self.lte)
        if all(b is None for b in bounds):
            raise InvalidArgumentError("a range needs at least one bound", field="range")
        if any(b is not None and math.isnan(b) for b in bounds):
            raise InvalidArgumentError("range bounds must not be NaN", field="range")


@dataclass(frozen=True)
class All:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    filter: Filter


Filter = Equals | In | ContainsAll | Range | All | AnyOf | Not
Condition = Equals | In | ContainsAll | Range


def evaluate(node: Filter, rows: RowTable) -> np.ndarray:
    """A boolean mask over ``rows`` (all rows, live or not) of the items ``node`` selects."""
    n = rows.n
    if isinstance(node, Equals):
        return _equals(rows, node.field, node.value, n)
    if isinstance(node, In):
        mask = np.zeros(n, dtype=bool)
        for value in node.values:
            mask |= _equals(rows, node.field, value, n)
        return mask
    if isinstance(node, ContainsAll):
        mask = np.ones(n, dtype=bool)
        for value in node.values:
            mask &= _equals(rows, node.field, value, n)
        return mask
    if isinstance(node, Range):
        column = rows.columns.get(node.field)
        if column is None or column.number is None:
            return np.zeros(n, dtype=bool)
        values = column.number[:n]
        with np.errstate(invalid="ignore"):
            mask = ~np.isnan(values)
            if node.gt is not None:
                mask &= values > node.gt
            if node.gte is not None:
                mask &= values >= node.gte
            if node.lt is not None:
                mask &= values < node.lt
            if node.lte is not None:
                mask &= values <= node.lte
        return mask
    if isinstance(node, All):
        mask = np.ones(n, dtype=bool)
        for child in node.filters:
            mask &= evaluate(child, rows)
        return mask
    if isinstance(node, AnyOf):
        mask = np.zeros(n, dtype=bool)
        for child in node.filters:
            mask |= evaluate(child, rows)
        return mask
    if isinstance(node, Not):
        return ~evaluate(node.filter, rows)
    raise TypeError(f"not a filter: {node!r}")


def _equals(rows: RowTable, field: str, value: Value, n: int) -> np.ndarray:
    column = rows.columns.get(field)
    if column is None:
        return np.zeros(n, dtype=bool)
    if isinstance(value, bool):
        if column.flag is None:
            return np.zeros(n, dtype=bool)
        return column.flag[:n] == int(value)
    if isinstance(value, str):
        code = column.code_of(value)
        if code is None:
            return np.zeros(n, dtype=bool)
        return column.rows_holding(code, n)
    if column.number is None:
        return np.zeros(n, dtype=bool)
    return column.number[:n] == float(value)


def matches(node: Filter, metadata: dict[str, Any], folded: frozenset[str] = frozenset()) -> bool:
    """The same semantics on one item's metadata (the reference the tests compare against)."""
    if isinstance(node, (Equals, In, ContainsAll)):
        stored = metadata.get(node.field)
        held = stored if isinstance(stored, list) else [stored]
        fold = node.field in folded
        wanted = [node.value] if isinstance(node, Equals) else list(node.values)
        hits = [any(_value_equals(h, w, fold) for h in held) for w in wanted]
        return all(hits) if isinstance(node, ContainsAll) else any(hits)
    if isinstance(node, Range):
        value = metadata.get(node.field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (
            (node.gt is None or value > node.gt)
            and (node.gte is None or value >= node.gte)
            and (node.lt is None or value < node.lt)
            and (node.lte is None or value <= node.lte)
        )
    if isinstance(node, All):
        return all(matches(child, metadata, folded) for child in node.filters)
    if isinstance(node, AnyOf):
        return any(matches(child, metadata, folded) for child in node.filters)
    if isinstance(node, Not):
        return not matches(node.filter, metadata, folded)
    raise TypeError(f"not a filter: {node!r}")


def _value_equals(stored: Any, wanted: Value, fold: bool = False) -> bool:
    if stored is None or isinstance(stored, bool) != isinstance(wanted, bool):
        return False
    if isinstance(wanted, str) or isinstance(stored, str):
        if not (isinstance(stored, str) and isinstance(wanted, str)):
            return False
        return stored.casefold() == wanted.casefold() if fold else stored == wanted
    return float(stored) == float(wanted)


def conditions(node: Filter) -> Iterator[Condition]:
    """Every condition of a filter tree."""
    if isinstance(node, (All, AnyOf)):
        for child in node.filters:
            yield from conditions(child)
    elif isinstance(node, Not):
        yield from conditions(node.filter)
    else:
        yield node


def check(node: Filter, schema: Schema | None, observed: Mapping[str, set[str]]) -> None:
    """INVALID_ARGUMENT for a condition on an unknown field or of the wrong type, naming it.

    ``schema`` decides when the collection has one; a collection made before schemas is
    checked against the kinds of values its items hold (``observed``: field -> kinds).
    """
    for condition in conditions(node):
        where = f"{condition.where}.field"
        if schema is not None:
            declared = schema.get(condition.field)
            if declared is None:
                raise schema.unknown_field(condition.field, where)
            kinds = _KINDS_OF_TYPE[declared.type]
            described = f"a {declared.type.value} field"
        else:
            if condition.field not in observed:
                known = ", ".join(sorted(observed)) or "none (the collection holds no metadata)"
                raise InvalidArgumentError(
                    f"{where}: no item has a field {condition.field!r}; the fields items hold are: {known}",
                    field=where,
                )
            kinds = observed[condition.field]
            described = f"a field holding {', '.join(sorted(kinds))} values"
        _check_condition(condition, kinds, described)


_KINDS_OF_TYPE = {
    FieldType.KEYWORD: {"string"},
    FieldType.TEXT: {"string"},
    FieldType.INTEGER: {"number"},
    FieldType.FLOAT: {"number"},
    FieldType.BOOLEAN: {"bool"},
    FieldType.KEYWORDS: {"list"},
}


def _check_condition(condition: Condition, kinds: set[str], described: str) -> None:
    name = condition.field
    if isinstance(condition, Range):
        if "number" not in kinds:
            raise InvalidArgumentError(
                f"{condition.where}.range: {name!r} is {described}; a range compares numbers",
                field=f"{condition.where}.range",
            )
        return
    if isinstance(condition, ContainsAll) and "list" not in kinds:
        raise InvalidArgumentError(
            f"{condition.where}.contains_all: {name!r} is {described}; contains_all tests lists (keywords)",
            field=f"{condition.where}.contains_all",
        )
    values = [condition.value] if isinstance(condition, Equals) else list(condition.values)
    test = (
        "equals" if isinstance(condition, Equals) else "in" if isinstance(condition, In) else "contains_all"
    )
    for value in values:
        kind = "bool" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"
        if kind in kinds or (kind == "string" and "list" in kinds):
            continue
        raise InvalidArgumentError(
            f"{condition.where}.{test}: {name!r} is {described}, compared with {value!r}",
            field=f"{condition.where}.{test}",
        )


def conjunction(filters: Sequence[Filter]) -> Filter:
    return filters[0] if len(filters) == 1 else All(tuple(filters))
