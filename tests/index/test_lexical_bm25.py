"""``LexicalIndex.score_items`` computes FTS5's bm25() from the rows themselves (no MATCH over
the posting lists): it must equal bm25() row for row, with field weights, repeated words,
words no item holds, after deletes and replacements, and in a later transaction."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from clipsearch.apps.demo.catalog import make_products
from clipsearch.schema import Schema
from index_service.lexical import LexicalFields, LexicalIndex, SearchOptions

pytestmark = pytest.mark.unit

SCHEMA = Schema.from_dict(
    {
        "title": "text",
        "description": "text",
        "brand": "keyword",
        "sku": {"type": "keyword", "case_insensitive": True},
        "color": "keyword",
    }
)
QUERIES = ("red dress", "a red striped dress", "leather boot", "kestrel", "SAL-SN-733103", "zzzz red", "dres")


def _metadata(p) -> dict:
    return {"title": p.title, "description": p.description, "brand": p.brand, "sku": p.sku, "color": p.color}


def _reference(conn, lexical: LexicalIndex, query: str, labels: list[int], options: SearchOptions) -> dict:
    """label -> -bm25() of FTS5 itself, for the query's planned terms OR-ed (as score_items scores)."""
    planned = lexical.plan(conn, query, options)
    terms = sorted({t for term in planned for t in term.alternatives})
    if not terms:
        return {}
    weights = [0.0] + [float(options.weights.get(n, 1.0)) for n in lexical.fields.names]
    rank = f"bm25(lex_fts, {', '.join('?' * len(weights))})"
    expression = " OR ".join('"' + t + '"' for t in terms)
    marks = ",".join("?" * len(labels))
    rows = conn.execute(
        f"SELECT rowid, {rank} FROM lex_fts WHERE lex_fts MATCH ? AND +rowid IN ({marks})",
        [*weights, expression, *labels],
    )
    return {label: -score for label, score in rows}


def test_score_items_equals_fts5_bm25(tmp_path: Path) -> None:
    lexical = LexicalIndex(LexicalFields.from_schema(SCHEMA))
    conn = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    products = make_products(600, seed=3)
    conn.execute("BEGIN IMMEDIATE")
    lexical.install(conn)
    lexical.write(conn, [(i, p.id, _metadata(p)) for i, p in enumerate(products)])
    conn.execute("COMMIT")
    rng = random.Random(5)
    conn.execute("BEGIN IMMEDIATE")  # replacements (repeated words: "leather leather") and deletes
    lexical.write(
        conn,
        [
            (i, products[i].id, {**_metadata(products[i]), "title": "leather leather boot"})
            for i in range(0, 40, 3)
        ],
    )
    lexical.delete(conn, list(range(100, 140)))
    conn.execute("COMMIT")
    checked = 0
    for weights in ({}, {"title": 3.0, "description": 0.5}, {"brand": 0.0, "sku": 2.5}):
        options = SearchOptions(weights=weights)
        for query in (*QUERIES, products[7].sku.lower(), f"{products[9].brand} {products[9].category}"):
            labels = sorted(rng.sample(range(600), 120))
            expected = _reference(conn, lexical, query, labels, options)
            got = {hit.label: hit.score for hit in lexical.score_items(conn, query, labels, options)}
            assert set(got) == set(expected), query
            for label, score in expected.items():
                assert got[label] == pytest.approx(score, rel=1e-12, abs=1e-12), (query, label)
            checked += len(expected)
    assert checked > 300
