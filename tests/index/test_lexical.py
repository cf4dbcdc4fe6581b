"""The lexical index: written inside the caller's transaction, deletes and replaces, rebuilds to
what incremental writes make, and finds words through typos, compounds and spelling variants."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from clipsearch.schema import Schema
from index_service import analysis
from index_service.lexical import LexicalFields, LexicalIndex, SearchOptions, stored_rows

pytestmark = pytest.mark.unit

SCHEMA = Schema.from_dict(
    {
        "title": "text",
        "description": "text",
        "brand": {"type": "keyword", "case_insensitive": True},
        "sku": {"type": "keyword", "case_insensitive": True},
        "code": "keyword",  # case-sensitive: exact keys keep their case
        "tags": "keywords",
        "price": "float",
    }
)
ITEMS = [
    (0, "a", {"title": "Red striped dress", "brand": "Kestrel", "sku": "KES-DR-000001", "price": 10.0}),
    (1, "b", {"title": "Blue t-shirt", "brand": "Northwind", "sku": "NOR-TS-000002", "tags": ["summer"]}),
    (2, "c", {"title": "Gray wool scarf", "description": "A warm scarf in grey", "brand": "Kestrel"}),
    (3, "d", {"title": "Red sneakers", "brand": "Umbra", "sku": "UMB-SN-000003", "code": "Ab-1"}),
    (4, "e", {"title": "Black dresses, two pack", "brand": "Umbra"}),
]


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db


@pytest.fixture
def lexical() -> LexicalIndex:
    return LexicalIndex(LexicalFields.from_schema(SCHEMA))


@pytest.fixture
def db(tmp_path: Path, lexical: LexicalIndex) -> sqlite3.Connection:
    db = connect(tmp_path / "store.sqlite")
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    lexical.write(db, ITEMS)
    db.execute("COMMIT")
    return db


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def dump(db: sqlite3.Connection) -> dict[str, list]:
    """Every lexical row, for comparing two files' lexical state."""
    return {
        table: sorted(db.execute(f"SELECT * FROM {table}").fetchall())
        for table in ("lex_terms", "lex_deletes", "lex_keys")
    } | {"lex_fts": sorted(db.execute("SELECT rowid, * FROM lex_fts").fetchall())}


def test_fields_come_from_the_schema_string_fields() -> None:
    fields = LexicalFields.from_schema(SCHEMA)
    assert fields.names == ["brand", "code", "description", "sku", "tags", "title"]  # no price
    by_name = {f.name: f for f in fields.fields}
    assert not by_name["title"].exact and by_name["sku"].exact and by_name["sku"].case_insensitive
    assert by_name["code"].exact and not by_name["code"].case_insensitive
    assert LexicalFields.from_json(fields.to_json()) == fields
    assert LexicalFields.from_schema(None).fields == ()


def test_a_rolled_back_transaction_leaves_no_lexical_rows(tmp_path: Path, lexical: LexicalIndex) -> None:
    db = connect(tmp_path / "store.sqlite")
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    db.execute("COMMIT")
    db.execute("CREATE TABLE items (label INTEGER PRIMARY KEY, id TEXT, metadata TEXT)")
    before = dump(db)

    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO items VALUES (0, 'a', '{}')")
    lexical.write(db, ITEMS)
    assert lexical.search(db, "dress", 5)  # visible inside the transaction
    db.execute("ROLLBACK")

    assert dump(db) == before and db.execute("SELECT count(*) FROM items").fetchone() == (0,)
    assert lexical.search(connect(tmp_path / "store.sqlite"), "dress", 5) == []


def test_write_commits_nothing_itself(tmp_path: Path, lexical: LexicalIndex) -> None:
    db = connect(tmp_path / "store.sqlite")
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    lexical.write(db, ITEMS)
    lexical.delete(db, [0])
    assert db.in_transaction  # still the caller's transaction: nothing committed or ended it
    other = connect(tmp_path / "store.sqlite")
    assert LexicalIndex.installed(other) is None  # not even the tables are visible elsewhere
    db.execute("COMMIT")
    assert LexicalIndex.installed(other) == lexical.fields


def test_delete_and_replace_update_terms_and_keys(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    assert sorted(ids(lexical.search(db, "kestrel", 5))) == ["a", "c"]
    db.execute("BEGIN IMMEDIATE")
    assert lexical.delete(db, [0, 99]) == 1  # an unknown label is ignored
    db.execute("COMMIT")
    assert ids(lexical.search(db, "kestrel", 5)) == ["c"]
    # The deleted SKU is no exact match any more; words other items share still find them.
    after = lexical.search(db, "KES-DR-000001", 5)
    assert "a" not in ids(after) and not any(h.exact for h in after)
    assert db.execute("SELECT count(*) FROM lex_terms WHERE term = 'striped'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM lex_deletes WHERE term = 'striped'").fetchone() == (0,)

    db.execute("BEGIN IMMEDIATE")  # the same label written again replaces its row
    lexical.write(db, [(2, "c", {"title": "Green hat", "brand": "Halden"})])
    db.execute("COMMIT")
    assert lexical.search(db, "scarf", 5) == [] and ids(lexical.search(db, "halden", 5)) == ["c"]
    assert db.execute("SELECT df FROM lex_terms WHERE term = 'kestrel'").fetchone() is None


def test_a_word_no_item_holds_does_not_hide_the_others(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    """A query word the catalog does not have (a size, a typo beyond correction) is dropped
    first, not kept as the rarest word of every tier (which would find nothing)."""
    found = lexical.search(db, "kestrel qqqqqqqqqq 987654", 5)
    assert sorted(ids(found)) == ["a", "c"]


def test_rebuild_equals_incremental_writes(tmp_path: Path, lexical: LexicalIndex) -> None:
    """Writes, replacements and deletes one by one leave exactly what a rebuild from the items makes."""
    rng = np.random.default_rng(3)
    words = ["red", "blue", "grey", "dress", "t-shirt", "scarf", "wool", "striped", "Kestrel", "Umbra"]
    incremental = connect(tmp_path / "incremental.sqlite")
    incremental.execute("CREATE TABLE items (label INTEGER PRIMARY KEY, id TEXT UNIQUE, metadata TEXT)")
    incremental.execute("BEGIN IMMEDIATE")
    lexical.install(incremental)
    incremental.execute("COMMIT")
    live: dict[str, int] = {}
    next_label = 0
    for step in range(300):
        item_id = f"i{int(rng.integers(40))}"
        incremental.execute("BEGIN IMMEDIATE")
        if step % 4 == 3 and item_id in live:
            label = live.pop(item_id)
            incremental.execute("DELETE FROM items WHERE label = ?", (label,))
            lexical.delete(incremental, [label])
        else:
            metadata = {
                "title": " ".join(rng.choice(words, size=3)),
                "brand": str(rng.choice(words[-2:])),
                "sku": f"SKU-{int(rng.integers(1000))}",
                "tags": [str(t) for t in rng.choice(words, size=2)],
            }
            if item_id in live:  # a replaced item gets a new label, as in the store
                lexical.delete(incremental, [live[item_id]])
                incremental.execute("DELETE FROM items WHERE label = ?", (live[item_id],))
            live[item_id] = next_label
            incremental.execute(
                "INSERT INTO items VALUES (?, ?, ?)", (next_label, item_id, json.dumps(metadata))
            )
            lexical.write(incremental, [(next_label, item_id, metadata)])
            next_label += 1
        incremental.execute("COMMIT")

    rebuilt = connect(tmp_path / "rebuilt.sqlite")
    rebuilt.execute("BEGIN IMMEDIATE")
    count = lexical.rebuild(rebuilt, list(stored_rows(incremental)), batch=7)
    rebuilt.execute("COMMIT")
    assert count == len(live) > 0
    assert dump(rebuilt) == dump(incremental)
    for query in ("red dres", "kestrl", "SKU-12", "tshirt", "gray wool"):
        assert lexical.search(rebuilt, query, 10) == lexical.search(incremental, query, 10)


def test_the_recorded_sequence_tells_an_opener_whether_to_rebuild(
    tmp_path: Path, lexical: LexicalIndex
) -> None:
    db = connect(tmp_path / "store.sqlite")
    assert LexicalIndex.sequence(db) is None  # no tables: rebuild
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    assert LexicalIndex.sequence(db) == 0
    lexical.write(db, ITEMS)
    LexicalIndex.set_sequence(db, 7)
    db.execute("ROLLBACK")
    assert LexicalIndex.sequence(db) is None  # rolled back with everything else
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    LexicalIndex.set_sequence(db, 7)
    db.execute("COMMIT")
    assert LexicalIndex.sequence(connect(tmp_path / "store.sqlite")) == 7


def test_installed_reports_fields_and_rebuild_replaces_other_fields(db: sqlite3.Connection) -> None:
    assert LexicalIndex.installed(db) == LexicalFields.from_schema(SCHEMA)
    narrower = LexicalIndex(LexicalFields.from_schema(Schema.from_dict({"title": "text"})))
    db.execute("BEGIN IMMEDIATE")
    narrower.rebuild(db, [(label, item_id, meta) for label, item_id, meta in ITEMS])
    db.execute("COMMIT")
    assert LexicalIndex.installed(db) == narrower.fields
    assert narrower.search(db, "kestrel", 5) == [] and ids(narrower.search(db, "scarf", 5)) == ["c"]


def test_typos_prefixes_compounds_and_variants_find_their_words(
    db: sqlite3.Connection, lexical: LexicalIndex
) -> None:
    assert ids(lexical.search(db, "rde dress", 1)) == ["a"]  # swapped letters
    assert ids(lexical.search(db, "red dres", 1)) == ["a"]  # a dropped letter
    assert sorted(ids(lexical.search(db, "kestrl", 5))) == ["a", "c"]
    assert ids(lexical.search(db, "sneak", 5)) == ["d"]  # a prefix completes
    for spelling in ("tshirt", "t shirt", "T-Shirts"):
        assert ids(lexical.search(db, spelling, 5)) == ["b"], spelling
    assert ids(lexical.search(db, "grey scarf", 5)) == ["c"]  # grey/gray are one term
    assert sorted(ids(lexical.search(db, "dress", 5))) == ["a", "e"]  # "dresses" is its plural
    hit = lexical.search(db, "rde dres", 1)[0]
    assert hit.matched == ("rde→red", "dres→dress")
    assert lexical.search(db, "zzzz qqqq", 5) == []


def test_items_holding_every_word_come_first(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    found = lexical.search(db, "red kestrel dress", 5)
    assert ids(found)[0] == "a" and len(found[0].matched) == 3
    assert all(len(a.matched) >= len(b.matched) for a, b in itertools.pairwise(found))


def test_exact_keys_match_whole_values_case_as_the_schema_says(
    db: sqlite3.Connection, lexical: LexicalIndex
) -> None:
    for typed in ("KES-DR-000001", "kes-dr-000001", "kesdr000001", "KES DR 000001"):
        hits = lexical.search(db, typed, 5)
        assert hits[0].id == "a" and hits[0].exact == ("sku",), typed
    assert lexical.search(db, "Ab-1", 5)[0].exact == ("code",)
    assert all(not h.exact for h in lexical.search(db, "ab-1", 5))  # code is case-sensitive
    assert lexical.search(db, "Kestrel", 5)[0].exact == ("brand",)  # a brand held by few items
    few = SearchOptions(exact_max_items=1)
    assert all(not h.exact for h in lexical.search(db, "Kestrel", 5, options=few))  # held by 2: a word


def test_a_filter_applies_inside_the_lexical_search(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    def only_odd(labels: np.ndarray) -> np.ndarray:
        return labels % 2 == 1

    assert sorted(ids(lexical.search(db, "red", 5))) == ["a", "d"]
    assert ids(lexical.search(db, "red", 5, allowed=only_odd)) == ["d"]
    assert lexical.search(db, "KES-DR-000001", 5, allowed=only_odd) == []  # exact matches are filtered too


def test_k_ties_and_order(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    db.execute("BEGIN IMMEDIATE")
    lexical.write(db, [(10 + i, f"z{9 - i}", {"title": "plain hat"}) for i in range(10)])
    db.execute("COMMIT")
    hits = lexical.search(db, "hat", 3)
    assert ids(hits) == ["z0", "z1", "z2"]  # all tied: the lowest ids, whatever the labels
    assert len({h.score for h in hits}) == 1


def test_score_items_scores_the_given_items_only(db: sqlite3.Connection, lexical: LexicalIndex) -> None:
    scored = lexical.score_items(db, "red dress", [0, 1, 3])
    assert ids(scored) == ["a", "d"]  # b matches no word
    full = {h.id: h.score for h in lexical.search(db, "red dress", 5)}
    assert scored[0].score == pytest.approx(full["a"])


def test_analysis_is_one_function_of_the_text() -> None:
    assert analysis.terms("The Café's T-Shirts, in GREY!") == [
        "cafe",
        "s",
        "cafe",
        "t",
        "shirt",
        "tshirt",
        "gray",
    ]
    assert analysis.terms("scarves dresses berries boxes") == ["scarf", "dress", "berry", "box"]
    assert analysis.edit_distance("rde", "red", 1) == 1 and analysis.edit_distance("abc", "xyz", 1) == 2
    assert (
        analysis.max_edits("hat") == 1
        and analysis.max_edits("sneakers") == 2
        and analysis.max_edits("a1b") == 0
    )


def test_the_variant_table_joins_spellings_a_catalog_mixes(tmp_path: Path, monkeypatch) -> None:
    """With both spellings in the catalog, "grey" is a known word and no typo correction is tried:
    only the variant table brings the "gray" items too."""
    items = [(0, "gray-hat", {"title": "Gray hat"}), (1, "grey-hat", {"title": "Grey hat"})]

    def found(query: str) -> list[str]:
        lexical = LexicalIndex(LexicalFields.from_schema(SCHEMA))
        db = connect(tmp_path / f"{len(analysis.VARIANTS)}.sqlite")
        db.execute("BEGIN IMMEDIATE")
        lexical.rebuild(db, items)
        db.execute("COMMIT")
        return sorted(ids(lexical.search(db, query, 5)))

    assert found("grey") == found("gray") == ["gray-hat", "grey-hat"]
    monkeypatch.setattr(analysis, "VARIANTS", {})
    analysis.clear_caches()
    try:
        assert found("grey") == ["grey-hat"] and found("gray") == ["gray-hat"]
    finally:
        monkeypatch.undo()
        analysis.clear_caches()


def test_a_collection_without_string_fields_has_an_empty_lexical_index(tmp_path: Path) -> None:
    lexical = LexicalIndex(LexicalFields.from_schema(Schema.from_dict({"price": "float"})))
    db = connect(tmp_path / "store.sqlite")
    db.execute("BEGIN IMMEDIATE")
    lexical.install(db)
    lexical.write(db, [(1, "a", {"price": 3.0})])
    db.execute("COMMIT")
    assert lexical.search(db, "red", 5) == [] and lexical.score_items(db, "red", [1]) == []
    db.execute("BEGIN IMMEDIATE")
    assert lexical.delete(db, [1]) == 1
    db.execute("COMMIT")
