#!/usr/bin/env python
"""Hybrid vs vector-only search through the real index server (docs/benchmarks.md, "Hybrid search").

100,000 products of the demo catalog's text (title, brand, SKU, description, category,
colour, pattern, price: ``clipsearch.apps.demo.catalog.make_products``) with 512-d vectors
drawn around one centre per category x colour (so the vector side finds products the words
name, as CLIP does), one Flat collection on ``python -m index_service``, searched over gRPC
with the queries of ``clipsearch.apps.demo.hybrid_queries`` (clean, typo, variant, synonym,
SKU, brand): each query's vector is its products' centre plus noise, its text the query.
Sequential latency (p50, p95) and closed-loop throughput with ``--clients`` callers, the
modes interleaved round by round; the median over rounds, and hybrid / vector.

    .venv/bin/python benchmarks/hybrid_bench.py                  # 100k items, 3 rounds
    .venv/bin/python benchmarks/hybrid_bench.py --items 20000 --rounds 2 --per-family 10
    .venv/bin/python benchmarks/hybrid_bench.py --data-dir /tmp/hb   # keep the data for a rerun
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from index_crash_test import free_port, wait_serving  # noqa: E402

from clipsearch.apps.demo.catalog import Product, make_products  # noqa: E402
from clipsearch.apps.demo.hybrid_queries import Query, build_queries  # noqa: E402
from clipsearch.index_client import IndexClient  # noqa: E402
from clipsearch.schema import Schema  # noqa: E402

DIM = 512
COLLECTION = "hybrid_bench"
MODES = ("vector", "hybrid")
SCHEMA = {
    "title": "text",
    "description": "text",
    "brand": "keyword",
    "sku": {"type": "keyword", "case_insensitive": True},
    "category": "keyword",
    "color": "keyword",
    "pattern": "keyword",
    "price": "float",
}


def centres(products: list[Product], rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    pairs = sorted({(p.category, p.color) for p in products})
    points = rng.standard_normal((len(pairs), DIM)).astype(np.float32)
    return dict(zip(pairs, points / np.linalg.norm(points, axis=1, keepdims=True), strict=True))


def around(centre: np.ndarray, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    x = centre + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ingest(client: IndexClient, products: list[Product], points: dict, rng: np.random.Generator) -> float:
    client.create_collection(COLLECTION, DIM, schema=Schema.from_dict(SCHEMA), exist_ok=True)
    started = time.perf_counter()
    batch = 1000
    for s in range(0, len(products), batch):
        part = products[s : s + batch]
        vectors = np.concatenate([around(points[(p.category, p.color)], rng) for p in part])
        metadata = [
            {
                "title": p.title,
                "description": p.description,
                "brand": p.brand,
                "sku": p.sku,
                "category": p.category,
                "color": p.color,
                "pattern": p.pattern,
                "price": p.price,
            }
            for p in part
        ]
        client.upsert(COLLECTION, [p.id for p in part], vectors, metadata)
    return len(products) / (time.perf_counter() - started)


def workload(
    products: list[Product], points: dict, per_family: int, seed: int
) -> list[tuple[str, str, np.ndarray]]:
    """(family, text, vector) per query: up to ``per_family`` of each family, spread over it."""
    rng = np.random.default_rng(seed)
    by_id = {p.id: p for p in products}
    families: dict[str, list[Query]] = {}
    for query in build_queries(products, seed):
        families.setdefault(query.family, []).append(query)
    out = []
    for family, queries in sorted(families.items()):
        for i in np.linspace(0, len(queries) - 1, min(per_family, len(queries))).astype(int):
            query = queries[int(i)]
            product = by_id[min(query.relevant)]
            out.append((family, query.text, around(points[(product.category, product.color)], rng)[0]))
    order = rng.permutation(len(out))
    return [out[int(i)] for i in order]


def search(client: IndexClient, mode: str, text: str, vector: np.ndarray) -> None:
    texts = [text] if mode != "vector" else []
    hits = client.search_batch(COLLECTION, vector[None, :], k=10, mode=mode, texts=texts, timeout_s=120)
    assert len(hits[0]) == 10, (mode, text, len(hits[0]))


def sequential(client: IndexClient, mode: str, queries) -> dict[str, list[float]]:
    """family -> latencies (s) of one pass, one request at a time."""
    by_family: dict[str, list[float]] = {}
    for family, text, vector in queries:
        started = time.perf_counter()
        search(client, mode, text, vector)
        by_family.setdefault(family, []).append(time.perf_counter() - started)
    return by_family


def throughput(address: str, mode: str, queries, clients: int) -> float:
    """Requests per second: ``clients`` threads, each its own channel, over the whole query list."""
    chunks = [queries[i::clients] for i in range(clients)]

    def run(chunk) -> None:
        with IndexClient(address, timeout_s=120) as client:
            for _, text, vector in chunk:
                search(client, mode, text, vector)

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(queries) / (time.perf_counter() - started)


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-family", type=int, default=30, help="queries per family (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="callers in the throughput phase")
    parser.add_argument("--data-dir", type=Path, help="keep the index here (reused when it holds the items)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng([args.seed, 512])
    products = make_products(args.items, args.seed)
    points = centres(products, rng)
    queries = workload(products, points, args.per_family, args.seed)
    load_before = os.getloadavg()
    print(
        f"{args.items} items x {DIM}-d, Flat, {len(queries)} queries "
        f"({', '.join(sorted({f for f, _, _ in queries}))}); {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "index"
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        command = [sys.executable, "-m", "index_service", "--port", str(port), "--data-dir", str(data_dir)]
        command += ["--snapshot-interval-s", "3600"]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'client'}"}
        with open(data_dir.parent / f"{data_dir.name}-server.log", "ab") as log:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        address = f"127.0.0.1:{port}"
        try:
            with grpc.insecure_channel(address) as channel:
                wait_serving(channel, server, timeout_s=1800)
            with IndexClient(address, timeout_s=600) as client:
                names = {c.name: c for c in client.list_collections()}
                if COLLECTION not in names or names[COLLECTION].item_count != args.items:
                    if COLLECTION in names:
                        client.drop_collection(COLLECTION)
                    rate = ingest(client, products, points, rng)
                    print(
                        f"ingest: {rate:,.0f} items/s (vectors + metadata + lexical rows, durable)",
                        flush=True,
                    )
                for _, text, vector in queries[:20]:  # warm up both paths
                    for mode in MODES:
                        search(client, mode, text, vector)
                rows = run_rounds(client, address, queries, args)
        finally:
            server.terminate()
            server.wait(timeout=60)
    report(rows, args, load_before, os.getloadavg())
    return 0


def run_rounds(client: IndexClient, address: str, queries, args) -> dict:
    rows: dict = {mode: {"p50": [], "p95": [], "qps": [], "family": {}} for mode in MODES}
    for r in range(args.rounds):
        order = MODES if r % 2 == 0 else MODES[::-1]
        for mode in order:
            by_family = sequential(client, mode, queries)
            latencies = [x for values in by_family.values() for x in values]
            rows[mode]["p50"].append(ms(latencies, 50))
            rows[mode]["p95"].append(ms(latencies, 95))
            for family, values in by_family.items():
                rows[mode]["family"].setdefault(family, []).append(ms(values, 50))
        for mode in order:
            rows[mode]["qps"].append(throughput(address, mode, queries, args.clients))
        print(
            f"round {r + 1}: "
            + "; ".join(
                f"{m} p50 {rows[m]['p50'][-1]:.1f} ms p95 {rows[m]['p95'][-1]:.1f} ms "
                f"{rows[m]['qps'][-1]:.1f} QPS"
                for m in MODES
            )
            + f" (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return rows


def report(rows: dict, args, load_before, load_after) -> None:
    med = {m: {key: statistics.median(rows[m][key]) for key in ("p50", "p95", "qps")} for m in MODES}
    print(
        f"\nmedian of {args.rounds} interleaved rounds; "
        f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}\n"
    )
    print(f"| mode | p50 ms | p95 ms | QPS ({args.clients} callers) |")
    print("|---|---|---|---|")
    for m in MODES:
        print(f"| {m} | {med[m]['p50']:.1f} | {med[m]['p95']:.1f} | {med[m]['qps']:.1f} |")
    v, h = med["vector"], med["hybrid"]
    print(
        f"| hybrid / vector | {h['p50'] / v['p50']:.2f}x | {h['p95'] / v['p95']:.2f}x "
        f"| {h['qps'] / v['qps']:.2f}x |"
    )
    print("\np50 ms per family (median of rounds): family | vector | hybrid | ratio")
    for family in sorted(rows["hybrid"]["family"]):
        fv = statistics.median(rows["vector"]["family"][family])
        fh = statistics.median(rows["hybrid"]["family"][family])
        print(f"| {family} | {fv:.1f} | {fh:.1f} | {fh / fv:.2f}x |")
    target = h["p50"] <= 1.5 * v["p50"]
    print(f"\ntarget hybrid p50 <= 1.5x vector: {'met' if target else 'MISSED'} ({h['p50'] / v['p50']:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
