"""The row table's columns (index_service/rows.py): bulk filling equals value-by-value filling.

A start fills every row in one call (one JSON parse, one numpy store per field and kind);
:meth:`FieldColumn.set` is the value-by-value reference. Every kind of value a catalog
holds, several kinds in one field, absent fields, empty metadata and case-folded strings.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from index_service.rows import FieldColumn, RowTable, encode_metadata

pytestmark = pytest.mark.unit

VALUES = [
    0,
    -3,
    7,
    2**70,
    1.5,
    -0.0,
    1e308,
    True,
    False,
    "red",
    "Red",
    "RED",
    "",
    "ünïcødé ✓",
    'a"quote\\',
    ["x", "Y"],
    [],
    ["red", "red"],
]


def _metadata(rng: random.Random) -> dict:
    fields = ["price", "color", "mixed", "Brand", "tags", "flag"]
    return {name: rng.choice(VALUES) for name in fields if rng.random() < 0.6}


def _reference(texts: list[str], folded: frozenset[str], capacity: int) -> dict[str, FieldColumn]:
    columns: dict[str, FieldColumn] = {}
    for row, text in enumerate(texts):
        for key, value in json.loads(text).items():
            column = columns.setdefault(key, FieldColumn(folded=key in folded))
            column.set(row, value, capacity)
    return columns


def _same(a: FieldColumn, b: FieldColumn, n: int) -> None:
    for kind in ("number", "code", "flag"):
        x, y = getattr(a, kind), getattr(b, kind)
        assert (x is None) == (y is None), kind
        if x is not None:
            np.testing.assert_array_equal(x[:n], y[:n], err_msg=kind)
    assert a.codebook == b.codebook
    assert a.pairs == b.pairs
    if a.pairs:
        assert a.list_rows is not None and b.list_rows is not None
        assert a.list_codes is not None and b.list_codes is not None
        np.testing.assert_array_equal(a.list_rows[: a.pairs], b.list_rows[: b.pairs])
        np.testing.assert_array_equal(a.list_codes[: a.pairs], b.list_codes[: b.pairs])


@pytest.mark.parametrize("seed", range(5))
def test_bulk_append_fills_the_columns_as_value_by_value(seed: int) -> None:
    rng = random.Random(seed)
    texts = [encode_metadata(_metadata(rng)) for _ in range(3000)]
    assert "{}" in texts
    folded = frozenset({"color", "Brand"})
    table = RowTable(folded)
    table.append(np.arange(len(texts), dtype=np.int64), [f"i{j}" for j in range(len(texts))], texts)
    reference = _reference(texts, folded, table.capacity)
    assert set(table.columns) == set(reference)
    for name, column in table.columns.items():
        _same(column, reference[name], len(texts))
    assert table.columns["color"].code_of("rEd") == table.columns["color"].code_of("red") is not None


def test_appends_in_pieces_and_updates_match_one_append() -> None:
    rng = random.Random(9)
    texts = [encode_metadata(_metadata(rng)) for _ in range(2500)]
    whole, pieces = RowTable(), RowTable()
    whole.append(np.arange(2500, dtype=np.int64), [str(j) for j in range(2500)], texts)
    for start in range(0, 2500, 700):  # grows the capacity between pieces
        stop = min(start + 700, 2500)
        pieces.append(
            np.arange(start, stop, dtype=np.int64), [str(j) for j in range(start, stop)], texts[start:stop]
        )
    for name, column in whole.columns.items():
        _same(column, pieces.columns[name], 2500)
    changed = [encode_metadata(_metadata(rng)) for _ in range(100)]
    rows = np.arange(0, 2500, 25)
    whole.update(rows, changed)
    merged = list(texts)
    for row, text in zip(rows.tolist(), changed, strict=True):
        merged[row] = text
    fresh = RowTable()
    fresh.append(np.arange(2500, dtype=np.int64), [str(j) for j in range(2500)], merged)
    for name, column in fresh.columns.items():
        for kind in ("number", "code", "flag"):
            x, y = getattr(column, kind), getattr(whole.columns[name], kind)
            if x is not None and y is not None:
                # codes differ in order of first sight; compare the decoded strings instead
                if kind == "code":
                    inverse_x = {c: s for s, c in column.codebook.items()}
                    inverse_y = {c: s for s, c in whole.columns[name].codebook.items()}
                    assert [inverse_x.get(int(c)) for c in x[:2500]] == [
                        inverse_y.get(int(c)) for c in y[:2500]
                    ]
                else:
                    np.testing.assert_array_equal(x[:2500], y[:2500])


def test_a_value_no_column_holds_is_refused() -> None:
    table = RowTable()
    with pytest.raises((TypeError, ValueError)):
        table.append(np.array([0], dtype=np.int64), ["a"], ['{"f":{"nested":1}}'])


def test_an_empty_list_is_stored_and_matches_no_filter(tmp_path) -> None:
    """``{"tags": []}`` as a shard's first list value was an INTERNAL error and an undone write."""
    from index_service.config import CollectionConfig
    from index_service.engine import Engine, EngineOptions
    from index_service.filters import Equals

    engine = Engine(EngineOptions(tmp_path / "index", background=False))
    try:
        engine.create_collection(CollectionConfig(name="c", dimension=4))
        collection = engine.collection("c")
        vectors = np.eye(4, dtype=np.float32)[:3]
        collection.upsert(["a", "b", "c"], vectors, [{"tags": []}, {"tags": ["red"]}, {}])
        assert sorted(hit.id for hit in collection.search(vectors[:1], 3)[0]) == ["a", "b", "c"]
        hits = collection.search(vectors[:1], 3, filter_=Equals("tags", "red"))[0]
        assert [hit.id for hit in hits] == ["b"]
        assert collection.get(["a"])[0].metadata == {"tags": []}
        engine.close(snapshot=False)  # and a restart reads it back
        engine = Engine(EngineOptions(tmp_path / "index", background=False))
        assert engine.collection("c").get(["a"])[0].metadata == {"tags": []}
    finally:
        engine.close(snapshot=False)
