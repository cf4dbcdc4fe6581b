"""A shard's in-memory view of its items: labels, ids, metadata and filter columns.

Rows are appended in label order (labels only grow), so ``labels`` stays sorted and a
label's row is found by binary search. Deleting marks a row dead; :meth:`RowTable.compacted`
drops dead rows once they dominate. Metadata is kept twice: as compact JSON to return with
hits, and as typed columns (number, string code, bool, and (row, code) pairs for lists of
strings) for vectorized filtering. Strings of case-insensitive fields are coded by their
case-folded form, so a filter compares them ignoring case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.schema import FieldType
from index_service.config import MetadataValue

_MIN_CAPACITY = 1024


@dataclass
class FieldColumn:
    """One metadata field; each kind's array is created when a value of that kind first appears."""

    number: np.ndarray | None = None  # float64, NaN where absent
    code: np.ndarray | None = None  # int32 into codebook, -1 where absent
    flag: np.ndarray | None = None  # int8 0/1, -1 where absent
    codebook: dict[str, int] = field(default_factory=dict)
    #: Lists of strings: (row, code) pairs, the first ``pairs`` of each array in use.
    list_rows: np.ndarray | None = None
    list_codes: np.ndarray | None = None
    pairs: int = 0
    #: Strings are coded case-folded (a case-insensitive field).
    folded: bool = False

    def grow(self, capacity: int) -> None:
        self.number = _grown(self.number, capacity, np.nan)
        self.code = _grown(self.code, capacity, -1)
        self.flag = _grown(self.flag, capacity, -1)

    def code_of(self, text: str) -> int | None:
        """The code a filter compares with (None: no item holds the string)."""
        return self.codebook.get(text.casefold() if self.folded else text)

    def set(self, row: int, value: MetadataValue, capacity: int) -> None:
        if isinstance(value, bool):
            if self.flag is None:
                self.flag = np.full(capacity, -1, dtype=np.int8)
            self.flag[row] = int(value)
        elif isinstance(value, str):
            if self.code is None:
                self.code = np.full(capacity, -1, dtype=np.int32)
            self.code[row] = self._coded(value)
        elif isinstance(value, list):
            codes = [self._coded(v) for v in value]
            if not codes:  # an empty list holds no string a filter could find
                return
            self._reserve_pairs(self.pairs + len(codes))
            assert self.list_rows is not None and self.list_codes is not None
            self.list_rows[self.pairs : self.pairs + len(codes)] = row
            self.list_codes[self.pairs : self.pairs + len(codes)] = codes
            self.pairs += len(codes)
        else:
            if self.number is None:
                self.number = np.full(capacity, np.nan, dtype=np.float64)
            self.number[row] = float(value)

    def set_many(self, rows: Sequence[int], values: Sequence[MetadataValue], capacity: int) -> None:
        """:meth:`set` for many rows at once: values sorted by kind, then one numpy store per kind."""
        numbers: tuple[list[int], list[MetadataValue]] = ([], [])
        strings: tuple[list[int], list[int]] = ([], [])
        flags: tuple[list[int], list[int]] = ([], [])
        for row, value in zip(rows, values, strict=True):
            if isinstance(value, bool):
                flags[0].append(row)
                flags[1].append(int(value))
            elif isinstance(value, str):
                strings[0].append(row)
                strings[1].append(self._coded(value))
            elif isinstance(value, list):
                self.set(row, value, capacity)
            else:
                numbers[0].append(row)
                numbers[1].append(value)
        if numbers[0]:
            if self.number is None:
                self.number = np.full(capacity, np.nan, dtype=np.float64)
            self.number[numbers[0]] = np.array(numbers[1], dtype=np.float64)
        if strings[0]:
            if self.code is None:
                self.code = np.full(capacity, -1, dtype=np.int32)
            self.code[strings[0]] = strings[1]
        if flags[0]:
            if self.flag is None:
                self.flag = np.full(capacity, -1, dtype=np.int8)
            self.flag[flags[0]] = flags[1]

    def _coded(self, text: str) -> int:
        key = text.casefold() if self.folded else text
        return self.codebook.setdefault(key, len(self.codebook))

    def _reserve_pairs(self, needed: int) -> None:
        size = 0 if self.list_rows is None else len(self.list_rows)
        if needed <= size:
            return
        bigger = max(needed, 2 * size, 64)
        rows, codes = np.zeros(bigger, dtype=np.int64), np.zeros(bigger, dtype=np.int32)
        if self.list_rows is not None and self.list_codes is not None:
            rows[: self.pairs], codes[: self.pairs] = (
                self.list_rows[: self.pairs],
                self.list_codes[: self.pairs],
            )
        self.list_rows, self.list_codes = rows, codes

    def rows_holding(self, code: int, n: int) -> np.ndarray:
        """Boolean mask over ``n`` rows: the string (code) is the value, or one of the list's."""
        mask = np.zeros(n, dtype=bool)
        if self.code is not None:
            mask |= self.code[:n] == code
        if self.pairs and self.list_rows is not None and self.list_codes is not None:
            mask[self.list_rows[: self.pairs][self.list_codes[: self.pairs] == code]] = True
        return mask

    def clear(self, rows: np.ndarray) -> None:
        """Removes every value of ``rows`` (before they are set again by a metadata update)."""
        if self.number is not None:
            self.number[rows] = np.nan
        if self.code is not None:
            self.code[rows] = -1
        if self.flag is not None:
            self.flag[rows] = -1
        if self.pairs and self.list_rows is not None and self.list_codes is not None:
            keep = ~np.isin(self.list_rows[: self.pairs], rows)
            kept = int(keep.sum())
            self.list_rows[:kept] = self.list_rows[: self.pairs][keep]
            self.list_codes[:kept] = self.list_codes[: self.pairs][keep]
            self.pairs = kept

    def kinds(self, alive: np.ndarray) -> list[str]:
        """Kinds of values the live rows hold (``alive``: a mask over rows): number, string, bool, list."""
        n = len(alive)
        found = []
        if self.number is not None and (~np.isnan(self.number[:n]) & alive).any():
            found.append("number")
        if self.code is not None and ((self.code[:n] >= 0) & alive).any():
            found.append("string")
        if self.flag is not None and ((self.flag[:n] >= 0) & alive).any():
            found.append("bool")
        if self.pairs and self.list_rows is not None and alive[self.list_rows[: self.pairs]].any():
            found.append("list")
        return found


def _grown(array: np.ndarray | None, capacity: int, fill: float) -> np.ndarray | None:
    if array is None or len(array) >= capacity:
        return array
    bigger = np.full(capacity, fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


def encode_metadata(metadata: dict[str, MetadataValue]) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RowTable:
    def __init__(self, folded: frozenset[str] = frozenset()) -> None:
        #: Fields whose strings are coded case-folded (see the module docstring).
        self.folded = folded
        self.n = 0
        self.live = 0
        self.labels = np.zeros(_MIN_CAPACITY, dtype=np.int64)
        self.alive = np.zeros(_MIN_CAPACITY, dtype=bool)
        self.ids: list[str] = []
        self.metadata: list[str] = []
        #: The product each row is one vector of ("" for none: the row is its own group).
        self.groups: list[str] = []
        self.columns: dict[str, FieldColumn] = {}

    @property
    def capacity(self) -> int:
        return len(self.labels)

    def append(
        self,
        labels: np.ndarray,
        ids: Sequence[str],
        metadata_json: Sequence[str],
        groups: Sequence[str] | None = None,
    ) -> None:
        """Adds live rows; ``labels`` must be increasing and above every label already here."""
        count = len(labels)
        if count == 0:
            return
        if self.n and labels[0] <= self.labels[self.n - 1]:
            raise ValueError("labels must be appended in increasing order")
        self._reserve(self.n + count)
        start = self.n
        self.labels[start : start + count] = labels
        self.alive[start : start + count] = True
        self.ids.extend(ids)
        self.metadata.extend(metadata_json)
        self.groups.extend(groups if groups is not None else [""] * count)
        self._set_values(range(start, start + count), metadata_json)
        self.n += count
        self.live += count

    def update(
        self, rows: np.ndarray, metadata_json: Sequence[str], groups: Sequence[str] | None = None
    ) -> None:
        """Replaces the metadata (and groups, if given) of ``rows`` in place; labels stay."""
        rows = np.asarray(rows, dtype=np.int64)
        for column in self.columns.values():
            column.clear(rows)
        for row, text in zip(rows.tolist(), metadata_json, strict=True):
            self.metadata[row] = text
        if groups is not None:
            for row, group in zip(rows.tolist(), groups, strict=True):
                self.groups[row] = group
        self._set_values(rows.tolist(), metadata_json)

    def _set_values(self, rows: Sequence[int], metadata_json: Sequence[str]) -> None:
        """Fills the columns: one JSON parse of all the texts, then one numpy store per field and kind.

        (A start fills every row here: per-row ``json.loads`` and per-value numpy stores were
        about half of opening a 500k-item collection.)
        """
        present = [(row, text) for row, text in zip(rows, metadata_json, strict=True) if text != "{}"]
        if not present:
            return
        parsed = json.loads("[" + ",".join(text for _, text in present) + "]")
        by_field: dict[str, tuple[list[int], list[MetadataValue]]] = {}
        for (row, _), values in zip(present, parsed, strict=True):
            for key, value in values.items():
                pending = by_field.get(key)
                if pending is None:
                    pending = by_field[key] = ([], [])
                pending[0].append(row)
                pending[1].append(value)
        for key, (field_rows, field_values) in by_field.items():
            self._column(key).set_many(field_rows, field_values, self.capacity)

    def _column(self, key: str) -> FieldColumn:
        column = self.columns.get(key)
        if column is None:
            column = self.columns[key] = FieldColumn(folded=key in self.folded)
        return column

    def field_kinds(self) -> list[tuple[str, FieldType]]:
        """(field, schema type) for each kind of value each field holds (strings count as keyword)."""
        types = {"number": FieldType.FLOAT, "string": FieldType.KEYWORD, "bool": FieldType.BOOLEAN}
        types["list"] = FieldType.KEYWORDS
        alive = self.alive[: self.n]
        return [(name, types[kind]) for name, column in self.columns.items() for kind in column.kinds(alive)]

    def _reserve(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        self.labels = np.concatenate([self.labels, np.zeros(capacity - self.capacity, dtype=np.int64)])
        self.alive = np.concatenate([self.alive, np.zeros(capacity - len(self.alive), dtype=bool)])
        for column in self.columns.values():
            column.grow(capacity)

    def rows_of(self, labels: np.ndarray) -> np.ndarray:
        """Row of each label, -1 for labels not here (or dead)."""
        labels = np.asarray(labels, dtype=np.int64)
        rows = np.searchsorted(self.labels[: self.n], labels)
        inside = rows < self.n
        found = np.zeros(len(labels), dtype=bool)
        found[inside] = self.labels[rows[inside]] == labels[inside]
        found[found] = self.alive[rows[found]]
        return np.where(found, rows, -1)

    def kill(self, labels: np.ndarray) -> int:
        rows = self.rows_of(labels)
        rows = rows[rows >= 0]
        self.alive[rows] = False
        self.live -= len(rows)
        return len(rows)

    def live_labels(self) -> np.ndarray:
        return self.labels[: self.n][self.alive[: self.n]]

    def max_label(self) -> int:
        return int(self.labels[self.n - 1]) if self.n else -1

    def item(self, row: int) -> tuple[str, dict[str, MetadataValue]]:
        return self.ids[row], json.loads(self.metadata[row])

    def selected_ids(self, mask: np.ndarray) -> list[str]:
        """Ids of the live rows where ``mask`` (over the first ``n`` rows) is set."""
        ids = self.ids
        return [ids[row] for row in np.flatnonzero(mask & self.alive[: self.n]).tolist()]

    def needs_compaction(self) -> bool:
        return self.n - self.live > max(1024, self.live)

    def compacted(self, folded: frozenset[str] | None = None) -> RowTable:
        """A copy without the dead rows (columns rebuilt, with other folded fields if given)."""
        keep = np.flatnonzero(self.alive[: self.n])
        fresh = RowTable(self.folded if folded is None else folded)
        fresh.append(
            self.labels[keep],
            [self.ids[i] for i in keep],
            [self.metadata[i] for i in keep],
            [self.groups[i] for i in keep],
        )
        return fresh
