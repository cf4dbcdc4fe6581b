"""Which lexical engine for hybrid search: SQLite FTS5 (our lexical.py) or tantivy, measured.

    python benchmarks/lexical_engines.py [--items 100000] [--batch 500] [--dim 512] [--rounds 3]

Both engines index the same documents (the demo catalog's text: title, description, brand,
category, color, pattern, SKU; ``make_products(n, seed=7)``, no images) with one durable
commit per ``--batch`` items, as an ingest writes, and answer the same queries:
clean 1-3 word queries, the same with one typo, and SKUs. Printed per engine: build rate,
index size, query p50/p95 per family and top-1 per family (a clean or typo query's first hit
has the category and colour asked; a SKU's is its product).

FTS5 is measured twice: items alone in the store's SQLite layout (the vector rows, the
baseline a write already pays) and items *plus* the lexical rows in the same transaction, so
the printed ratio is what hybrid adds to a write. tantivy runs in its own venv
(``var/peers/tantivy-venv``, made on first use by ``_peer_envs.py``) and cannot join a SQLite
transaction: its commit is a second, separate durable write. Rounds interleave the engines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _peer_envs import TANTIVY, ensure  # noqa: E402

from clipsearch.apps.demo.catalog import make_products  # noqa: E402
from clipsearch.schema import Schema  # noqa: E402
from index_service.lexical import LexicalFields, LexicalIndex  # noqa: E402

FIELDS = ("title", "description", "brand", "category", "color", "pattern", "sku")
SCHEMA = Schema.from_dict(
    {
        "title": "text",
        "description": "text",
        **{name: {"type": "keyword", "case_insensitive": True} for name in FIELDS[2:]},
    }
)


def documents(n: int) -> list[dict[str, str]]:
    return [{"id": p.id, **{name: getattr(p, name) for name in FIELDS}} for p in make_products(n, seed=7)]


def typo(word: str, rng: np.random.Generator) -> str:
    """One edit: a deleted, swapped or replaced letter (never the first)."""
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    letter = "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(26))]
    return word[:i] + letter + word[i + 1 :]


def queries(docs: list[dict[str, str]], per_family: int) -> list[tuple[str, str, dict[str, str]]]:
    """(family, query, what its first hit must have)."""
    rng = np.random.default_rng(5)
    out = []
    for i in rng.choice(len(docs), size=per_family, replace=False):
        d = docs[int(i)]
        words = int(rng.integers(1, 4))
        want = {"category": d["category"]} if words == 1 else {"category": d["category"], "color": d["color"]}
        text = [d["category"]] if words == 1 else [d["color"], d["category"]]
        if words == 3:
            text = [d["brand"].split()[0], *text]
            want["brand"] = d["brand"]
        out.append(("clean", " ".join(text), want))
        if words >= 2:
            hit = int(rng.integers(len(text)))
            text = [typo(w, rng) if j == hit else w for j, w in enumerate(text)]
            out.append(("typo", " ".join(text), want))
    for i in rng.choice(len(docs), size=per_family // 2, replace=False):
        out.append(("sku", docs[int(i)]["sku"], {"id": docs[int(i)]["id"]}))
    return out


def store_batches(path: Path, docs: list[dict[str, str]], batch: int, dim: int, lexical: bool) -> float:
    """Writes ``docs`` as the store does (WAL, synchronous=FULL, one transaction per batch); seconds."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size=16384")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE items (label INTEGER PRIMARY KEY, id TEXT UNIQUE, vector BLOB, metadata TEXT)")
    index = LexicalIndex(LexicalFields.from_schema(SCHEMA))
    if lexical:
        db.execute("BEGIN IMMEDIATE")
        index.install(db)
        db.execute("COMMIT")
    vector = np.random.default_rng(0).standard_normal(dim).astype("<f4").tobytes()
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        chunk = docs[start : start + batch]
        rows = [(start + j, d["id"], vector, json.dumps(d)) for j, d in enumerate(chunk)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO items (label, id, vector, metadata) VALUES (?, ?, ?, ?)", rows)
        if lexical:
            index.write(db, [(label, item_id, meta) for label, item_id, _, meta in rows])
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def fts5_queries(
    path: Path, planned: list[tuple[str, str, dict]], k: int
) -> tuple[list[float], list[list[str]]]:
    db = sqlite3.connect(path, isolation_level=None)
    index = LexicalIndex(LexicalFields.from_schema(SCHEMA))
    times, results = [], []
    for _, query, _ in planned:
        started = time.perf_counter()
        hits = index.search(db, query, k)
        times.append(time.perf_counter() - started)
        results.append([h.id for h in hits])
    db.close()
    return times, results


def tantivy_run(python: Path, docs_path: Path, planned: list, k: int, batch: int, where: Path) -> dict:
    where.mkdir()
    job = {
        "docs": str(docs_path),
        "queries": [q for _, q, _ in planned],
        "k": k,
        "batch": batch,
        "dir": str(where),
    }
    done = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "_tantivy_worker.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def top1(planned: list, results: list[list[str]], by_id: dict[str, dict]) -> dict[str, float]:
    scores: dict[str, list[bool]] = {}
    for (family, _, want), ids in zip(planned, results, strict=True):
        first = by_id.get(ids[0]) if ids else None
        ok = first is not None and all(
            (first[key] if key != "id" else first["id"]) == value for key, value in want.items()
        )
        scores.setdefault(family, []).append(ok)
    return {family: sum(v) / len(v) for family, v in scores.items()}


def flat_search_times(n: int, dim: int, queries: int) -> list[float]:
    """Seconds per single-query FAISS flat (inner product) search over ``n`` vectors: the scale the
    lexical side is compared with (a vector-only search at the same size)."""
    import faiss

    rng = np.random.default_rng(1)
    index = faiss.IndexFlatIP(dim)
    for start in range(0, n, 10_000):
        block = rng.standard_normal((min(10_000, n - start), dim)).astype(np.float32)
        index.add(block / np.linalg.norm(block, axis=1, keepdims=True))
    times = []
    for row in rng.standard_normal((queries, dim)).astype(np.float32):
        started = time.perf_counter()
        index.search(row[None, :], 10)
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="clean queries (and as many typos)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)

    tantivy = ensure(TANTIVY)
    docs = documents(args.items)
    by_id = {d["id"]: d for d in docs}
    planned = queries(docs, args.queries)
    rows: dict[str, list] = {"items only": [], "items + FTS5": [], "tantivy": []}
    query_times: dict[str, list[float]] = {"FTS5": [], "tantivy": []}
    flat: list[float] = []
    families = [family for family, _, _ in planned]
    quality: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="clipsearch-lexical-") as tmp:
        docs_path = Path(tmp) / "docs.jsonl"
        docs_path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        for round_ in range(args.rounds):
            base = Path(tmp) / f"round{round_}"
            base.mkdir()
            rows["items only"].append(store_batches(base / "items.sqlite", docs, args.batch, args.dim, False))
            rows["items + FTS5"].append(store_batches(base / "fts.sqlite", docs, args.batch, args.dim, True))
            times, results = fts5_queries(base / "fts.sqlite", planned, args.k)
            query_times["FTS5"] += times
            quality["FTS5"] = top1(planned, results, by_id)
            run = tantivy_run(tantivy.python, docs_path, planned, args.k, args.batch, base / "tantivy")
            rows["tantivy"].append(run["build_s"])
            query_times["tantivy"] += run["times"]
            quality["tantivy"] = top1(planned, run["results"], by_id)
            flat += flat_search_times(args.items, args.dim, len(planned))
            sizes = {
                "items only": (base / "items.sqlite").stat().st_size,
                "items + FTS5": (base / "fts.sqlite").stat().st_size,
                "tantivy": run["bytes"],
            }
            print(
                f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items()), flush=True
            )
            for file in base.iterdir():
                if file.is_file():
                    file.unlink()
    print(
        f"\n{args.items:,} items, {args.batch} per durable commit, {args.dim}-d vectors in the store rows; "
        f"{len(planned)} queries, k={args.k}; {args.rounds} interleaved rounds (median); "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end; SQLite {sqlite3.sqlite_version}, {tantivy.describe()}\n"
    )
    print("| write path | items/s | file size | ratio to items only |")
    print("|---|---|---|---|")
    base_s = statistics.median(rows["items only"])
    for name, seconds in rows.items():
        median = statistics.median(seconds)
        print(
            f"| {name} | {args.items / median:,.0f} | {sizes[name] / 2**20:,.1f} MB "
            f"| {median / base_s:.2f}x time |"
        )
    print("\n| engine | family | queries | p50 ms | p95 ms | top-1 |")
    print("|---|---|---|---|---|---|")
    for engine, times in query_times.items():
        per_round = len(planned)
        for family in dict.fromkeys(families):
            picked = [t for i, t in enumerate(times) if families[i % per_round] == family]
            print(
                f"| {engine} | {family} | {families.count(family)} | {percentile(picked, 50):.2f} | "
                f"{percentile(picked, 95):.2f} | {quality[engine][family]:.3f} |"
            )
    print(
        f"\nFor scale, a vector-only search at the same size (FAISS flat, {args.items:,} x {args.dim}, "
        f"one query, k=10): p50 {percentile(flat, 50):.2f} ms, p95 {percentile(flat, 95):.2f} ms."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
