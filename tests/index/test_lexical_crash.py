"""kill -9 while items and their lexical rows are written: the file never holds one without the other.

The property the engine was chosen for (docs/hybrid.md): FTS5 rows are written in the same
SQLite transaction as the items, so whatever moment the writer dies at, the committed items
and the committed lexical rows are the same set.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index_service.lexical import LexicalIndex

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import json, sqlite3, sys
from clipsearch.schema import Schema
from index_service.lexical import LexicalFields, LexicalIndex

db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
lexical = LexicalIndex(LexicalFields.from_schema(Schema.from_dict({"title": "text", "sku": "keyword"})))
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE IF NOT EXISTS items (label INTEGER PRIMARY KEY, id TEXT UNIQUE, metadata TEXT)")
if LexicalIndex.installed(db) is None:
    lexical.install(db)
db.execute("COMMIT")
label = db.execute("SELECT coalesce(max(label) + 1, 0) FROM items").fetchone()[0]
announced = False
while True:
    db.execute("BEGIN IMMEDIATE")
    rows = []
    for _ in range(50):
        item_id = f"i{label % 700}"  # replaces items too: a delete and an insert per replacement
        old = db.execute("SELECT label FROM items WHERE id = ?", (item_id,)).fetchone()
        if old is not None:
            db.execute("DELETE FROM items WHERE label = ?", old)
            lexical.delete(db, [old[0]])
        metadata = {"title": f"red dress number {label}", "sku": f"SKU-{label}"}
        db.execute("INSERT INTO items VALUES (?, ?, ?)", (label, item_id, json.dumps(metadata)))
        rows.append((label, item_id, metadata))
        label += 1
    lexical.write(db, rows)
    db.execute("COMMIT")
    if not announced:
        print("ready", flush=True)
        announced = True
"""


def test_items_and_lexical_rows_agree_after_kill_9_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    rng = np.random.default_rng(17)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "client"), str(REPO)])}
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(float(rng.uniform(0.0, 0.4)))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        db = sqlite3.connect(path, isolation_level=None)
        items = dict(db.execute("SELECT label, id FROM items").fetchall())
        lexical = dict(db.execute("SELECT rowid, item_id FROM lex_fts").fetchall())
        keys = {label for (label,) in db.execute("SELECT label FROM lex_keys")}
        assert items and items == lexical and keys == set(items)
        assert LexicalIndex.installed(db) is not None
        db.close()
