"""Metadata filters: a small tree of conditions and their evaluation over columns.

A condition tests one field; an item without the field never matches a condition (but does
match its negation: ``Not`` is the plain complement). Evaluation is vectorized over a
shard's :class:`~index_service.rows.RowTable` and yields the selected FAISS labels, which
the shard hands to FAISS as an ``IDSelector`` so the search itself skips everything else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clipsearch.errors import InvalidArgumentError

if TYPE_CHECKING:
    from index_service.rows import RowTable

Value = str | float | bool


@dataclass(frozen=True)
class Equals:
    field: str
    value: Value


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Range:
    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

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


Filter = Equals | In | Range | All | AnyOf | Not


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
        code = column.codebook.get(value)
        if code is None or column.code is None:
            return np.zeros(n, dtype=bool)
        return column.code[:n] == code
    if column.number is None:
        return np.zeros(n, dtype=bool)
    return column.number[:n] == float(value)


def matches(node: Filter, metadata: dict[str, Value]) -> bool:
    """The same semantics on one item's metadata (the reference the tests compare against)."""
    if isinstance(node, Equals):
        return _value_equals(metadata.get(node.field), node.value)
    if isinstance(node, In):
        return any(_value_equals(metadata.get(node.field), v) for v in node.values)
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
        return all(matches(child, metadata) for child in node.filters)
    if isinstance(node, AnyOf):
        return any(matches(child, metadata) for child in node.filters)
    if isinstance(node, Not):
        return not matches(node.filter, metadata)
    raise TypeError(f"not a filter: {node!r}")


def _value_equals(stored: Value | None, wanted: Value) -> bool:
    if stored is None or isinstance(stored, bool) != isinstance(wanted, bool):
        return False
    if isinstance(wanted, str) or isinstance(stored, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return float(stored) == float(wanted)


def conjunction(filters: Sequence[Filter]) -> Filter:
    return filters[0] if len(filters) == 1 else All(tuple(filters))
