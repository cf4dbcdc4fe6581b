#!/usr/bin/env python
"""Recall at any filter, compressed indexes with re-ranking, and a large catalog on one box
(docs/benchmarks.md, "Recall at any filter"; issue 19).

512-d normalized clustered vectors (as benchmarks/index_bench.py), each item with one
number ``u`` drawn uniformly in [0, 1): the filter ``u < s`` selects a fraction ``s``.
Collections are written in-process through ``Collection.upsert`` (the durable write path
without gRPC, to save time), trained and snapshotted, then served by a fresh
``python -m index_service`` process and searched over gRPC, one query per call. Truth is
numpy brute force over the same vectors and mask.

    python benchmarks/recall_bench.py sweep            # 100k: Flat, HNSW32, IVF1024,PQ128,Rerank20
                                                       # x selectivity 0.1 %, 1 %, 10 %, 50 %, 100 %
    python benchmarks/recall_bench.py compressed -n 100000   # Flat vs compressed: RSS, recall, p50, QPS
    python benchmarks/recall_bench.py monitor           # search QPS, recall monitor off vs 1 %
    python benchmarks/recall_bench.py scale -n 5000000 [--drop-caches]   # compressed only: ingest,
        # disk bytes/vector, restart (then from a cold page cache with --drop-caches), p50, recall

Every figure is from this run; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import vector_to_proto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from index_bench import rss_mb, stop  # noqa: E402
from index_crash_test import free_port, wait_serving  # noqa: E402

from index_service.collection import Collection  # noqa: E402
from index_service.config import CollectionConfig  # noqa: E402
from index_service.engine import Engine, EngineOptions  # noqa: E402

DIM = 512
COMPRESSED = "IVF1024,PQ128,Rerank20"
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5, 1.0)
CHUNK = 50_000


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def chunks(n: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start, vectors, u) in chunks, the same for a seed (5M vectors never sit in memory at once)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32) / np.sqrt(DIM)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        picks = rng.integers(0, len(centres), m)
        x = centres[picks] + 0.6 * rng.standard_normal((m, DIM)).astype(np.float32) / np.sqrt(DIM)
        yield start, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), rng.random(m)


def queries_for(nq: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    centres = np.random.default_rng(0).standard_normal((1000, DIM)).astype(np.float32) / np.sqrt(DIM)
    x = centres[rng.integers(0, 1000, nq)] + 0.6 * rng.standard_normal((nq, DIM)).astype(
        np.float32
    ) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def truth(
    n: int, queries: np.ndarray, selectivities: tuple[float, ...], k: int = 10
) -> dict[float, np.ndarray]:
    """Exact top-k ids per selectivity, by brute force over the chunks."""
    best: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for start, x, u in chunks(n):
        scores = queries @ x.T
        for s in selectivities:
            masked = np.where((u < s)[None, :], scores, -np.inf)
            top = (
                np.argpartition(-masked, k, axis=1)[:, :k]
                if masked.shape[1] > k
                else np.tile(np.arange(masked.shape[1]), (len(queries), 1))
            )
            got_s = np.take_along_axis(masked, top, axis=1)
            got_i = top + start
            if s in best:
                got_s = np.hstack([best[s][0], got_s])
                got_i = np.hstack([best[s][1], got_i])
            order = np.argsort(-got_s, axis=1, kind="stable")[:, :k]
            best[s] = (np.take_along_axis(got_s, order, axis=1), np.take_along_axis(got_i, order, axis=1))
    return {s: ids for s, (_, ids) in best.items()}


def build(data_dir: Path, name: str, spec: str, n: int) -> tuple[float, float]:
    """Writes ``n`` items in-process, trains, snapshots: (durable items/s, seconds training + snapshot)."""
    engine = Engine(EngineOptions(data_dir, background=False))
    try:
        engine.create_collection(CollectionConfig(name=name, dimension=DIM, index_spec=spec, num_shards=1))
        collection = engine.collection(name)
        writing = 0.0
        for start, x, u in chunks(n):
            started = time.perf_counter()
            for s in range(0, len(x), 10_000):
                ids = [f"i{start + j}" for j in range(s, min(s + 10_000, len(x)))]
                collection.upsert(ids, x[s : s + 10_000], [{"u": float(v)} for v in u[s : s + 10_000]])
            writing += time.perf_counter() - started
            if not all(shard.trained for shard in collection.shards):
                engine.maintain_once()  # trains once the threshold is reached: later writes are encoded
        started = time.perf_counter()
        while engine.maintain_once():
            pass
        collection.snapshot_all()
        return n / writing, time.perf_counter() - started
    finally:
        engine.close(snapshot=True)


def serve(data_dir: Path) -> tuple[subprocess.Popen, grpc.Channel, float]:
    port = free_port()
    command = [sys.executable, "-m", "index_service", "--port", str(port), "--data-dir", str(data_dir)]
    command += ["--omp-threads", "1", "--snapshot-interval-s", "3600", "--recall-sample-rate", "0"]
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    wait_serving(channel, server, timeout_s=3600)
    return server, channel, time.perf_counter() - started


def search(stub, name: str, queries: np.ndarray, selectivity: float, k: int = 10, ef_search: int = 0):
    """(QPS, p50 s, ids, the first query's plan) for one query per call."""
    condition = index_pb2.FieldCondition(field="u", range=index_pb2.Range(lt=selectivity))
    filter_ = index_pb2.Filter(condition=condition) if selectivity < 1 else None
    latencies, ids, plan = [], [], None
    started = time.perf_counter()
    for i, q in enumerate(queries):
        request = index_pb2.SearchRequest(
            collection=name,
            queries=[vector_to_proto(q)],
            k=k,
            filter=filter_,
            explain=i == 0,
            params=index_pb2.SearchParams(ef_search=ef_search),
        )
        t = time.perf_counter()
        reply = stub.Search(request, timeout=120)
        latencies.append(time.perf_counter() - t)
        ids.append([int(h.id[1:]) for h in reply.results[0].hits])
        plan = plan or reply.plans[0]
    return len(queries) / (time.perf_counter() - started), statistics.median(latencies), ids, plan


def recall(found: list[list[int]], exact: np.ndarray, k: int = 10) -> float:
    return float(
        np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, exact, strict=True)])
    )


def sweep(n: int, nq: int, specs: list[str], ef_search: int = 0) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-recall-"))
    print(
        f"# selectivity sweep: {n:,} x {DIM}-d, {nq} queries per cell, k=10, {os.cpu_count()} CPUs, {load()}"
    )
    names = {spec: f"c{i}" for i, spec in enumerate(specs)}
    for spec, name in names.items():
        rate, build_s = build(data_dir, name, spec, n)
        print(f"{spec}: ingest {rate:,.0f} items/s, training+snapshot {build_s:.0f} s ({load()})", flush=True)
    queries = queries_for(nq)
    exact = truth(n, queries, SELECTIVITIES)
    server, channel, _ = serve(data_dir)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    rows = []
    for s in SELECTIVITIES:
        for spec, name in names.items():  # the indexes side by side, per selectivity
            qps, p50, ids, plan = search(stub, name, queries, s, ef_search=ef_search)
            rows.append((s, spec, plan.strategy, recall(ids, exact[s]), qps, p50))
            print(f"  {s:.1%} {spec}: {plan.strategy} ({plan.reason}) recall {rows[-1][3]:.3f}", flush=True)
    stop(server, channel)
    print(f"\n{load()}\n")
    print("| selected | index | plan | recall@10 | QPS | p50 ms |")
    print("|---:|---|---|---:|---:|---:|")
    for s, spec, strategy, r, qps, p50 in rows:
        print(f"| {s:.1%} | {spec} | {strategy} | {r:.3f} | {qps:,.0f} | {p50 * 1000:.2f} |")
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def measure(data_dir: Path, name: str, queries: np.ndarray, exact: np.ndarray, drop_caches: bool = False):
    """Restart (cold with ``drop_caches``), then search.

    Returns (restart s, first result s, RSS MB, QPS, p50 s, recall@10)."""
    if drop_caches:
        print(f"page cache: {drop_page_cache(data_dir)}", flush=True)
    server, channel, restart_s = serve(data_dir)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    first = time.perf_counter()
    search(stub, name, queries[:1], 1.0)
    first_s = restart_s + time.perf_counter() - first
    qps, p50, ids, _ = search(stub, name, queries, 1.0)
    rss = rss_mb(server.pid)
    stop(server, channel)
    return restart_s, first_s, rss, qps, p50, recall(ids, exact)


def drop_page_cache(data_dir: Path) -> str:
    """Empties the page cache of what a server start reads; says how.

    ``echo 3 > /proc/sys/vm/drop_caches`` where allowed (root on the host); else, as an
    unprivileged user may, each file of the data directory, the virtualenv and the Python
    installation is synced and dropped with ``posix_fadvise(DONTNEED)`` (clean pages of a
    file leave the cache), which covers the collection files, the interpreter and the
    libraries a start reads. Either way the VM's host may still cache its disk.
    """
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "dropped (/proc/sys/vm/drop_caches)"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    dropped = 0
    for root in dict.fromkeys([data_dir, Path(sys.prefix), Path(sys.base_prefix)]):
        for path in root.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                dropped += path.stat().st_size
            except OSError:
                pass
            finally:
                os.close(fd)
    return (
        f"drop_caches not writable ({reason}): {dropped / 2**30:.1f} GiB of data dir, virtualenv "
        "and Python files dropped with posix_fadvise(DONTNEED)"
    )


def empty_rss() -> float:
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-recall-empty-"))
    server, channel, _ = serve(data_dir)
    rss = rss_mb(server.pid)
    stop(server, channel)
    shutil.rmtree(data_dir, ignore_errors=True)
    return rss


def disk_mb(data_dir: Path) -> tuple[float, float]:
    """(store MB, snapshots MB) of every collection under ``data_dir``."""
    store = sum(f.stat().st_size for f in data_dir.glob("collections/*/store.sqlite*"))
    snaps = sum(f.stat().st_size for f in data_dir.glob("collections/*/shard-*/snap-*"))
    return store / 2**20, snaps / 2**20


def compressed(n: int, nq: int, spec: str) -> int:
    print(f"# compressed vs Flat: {n:,} x {DIM}-d, {nq} queries, k=10, {os.cpu_count()} CPUs, {load()}")
    queries = queries_for(nq)
    exact = truth(n, queries, (1.0,))[1.0]
    base = empty_rss()
    rows = []
    for kind in ("Flat", spec):
        data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-recall-"))
        rate, build_s = build(data_dir, "c", kind, n)
        _, _, rss, qps, p50, r = measure(data_dir, "c", queries, exact)
        store, snaps = disk_mb(data_dir)
        rows.append((kind, rss, rss - base, qps, p50, r, store, snaps, rate, build_s))
        print(f"{kind}: RSS {rss:,.0f} MB, recall {r:.3f} ({load()})", flush=True)
        if kind == spec:
            rerank_reads(data_dir, n)
        shutil.rmtree(data_dir, ignore_errors=True)
    flat_rss, flat_net = rows[0][1], rows[0][2]
    print(f"\nempty server RSS {base:,.0f} MB; {load()}\n")
    print(
        "| index | RSS MB | RSS above an empty server MB | of Flat's | recall@10 | QPS | p50 ms "
        "| store MB | snapshot MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, rss, net, qps, p50, r, store, snaps, _, _ in rows:
        print(
            f"| {kind} | {rss:,.0f} | {net:,.0f} | {rss / flat_rss:.0%} ({net / flat_net:.0%} above empty) "
            f"| {r:.3f} | {qps:,.0f} | {p50 * 1000:.2f} | {store:,.0f} | {snaps:,.0f} |"
        )
    return 0


def rerank_reads(data_dir: Path, n: int, per_query: int = 100, rounds: int = 200) -> None:
    """The re-ranking read: ``per_query`` random vectors from the store (SQLite) vs an mmap'd file."""
    from concurrent.futures import ThreadPoolExecutor

    from index_service.collection import CollectionOptions

    path = data_dir / "collections" / "c"
    collection = Collection.open(path, ThreadPoolExecutor(1), CollectionOptions())
    try:
        flat = data_dir / "vectors.f32"
        with open(flat, "wb") as out:
            for _, x, _ in chunks(n):
                out.write(x.tobytes())
        mapped = np.memmap(flat, dtype=np.float32, mode="r", shape=(n, DIM))
        rng = np.random.default_rng(7)
        picks = [np.sort(rng.choice(n, per_query, replace=False)) for _ in range(rounds)]
        t = time.perf_counter()
        for labels in picks:
            collection.store.vectors(labels, DIM)
        store_ms = (time.perf_counter() - t) / rounds * 1000
        t = time.perf_counter()
        for labels in picks:
            np.asarray(mapped[labels])
        mmap_ms = (time.perf_counter() - t) / rounds * 1000
        print(
            f"re-rank read of {per_query} vectors: store {store_ms:.2f} ms, "
            f"mmap'd file {mmap_ms:.2f} ms (warm cache)"
        )
    finally:
        collection.close(snapshot=False)


def scale(n: int, nq: int, spec: str, drop_caches: bool) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-recall-scale-"))
    print(f"# scale: {n:,} x {DIM}-d {spec}, 1 shard, {os.cpu_count()} CPUs, {load()}")
    started = time.perf_counter()
    rate, build_s = build(data_dir, "c", spec, n)
    print(
        f"ingest {rate:,.0f} items/s; then training, encoding and snapshot {build_s:.0f} s; "
        f"wall {time.perf_counter() - started:.0f} s ({load()})",
        flush=True,
    )
    store, snaps = disk_mb(data_dir)
    raw = n * DIM * 4 / 2**20
    print(
        f"disk: store {store:,.0f} MB + snapshots {snaps:,.0f} MB = "
        f"{(store + snaps) / raw:.2f}x the raw vectors "
        f"({(store + snaps) * 2**20 / n:,.0f} bytes/vector)",
        flush=True,
    )
    queries = queries_for(nq)
    exact = truth(n, queries, (1.0,))[1.0]
    for cold in (False, True) if drop_caches else (False,):
        restart_s, first_s, rss, qps, p50, r = measure(data_dir, "c", queries, exact, cold)
        cache = "cold page cache" if cold else "warm page cache"
        print(
            f"restart to SERVING {restart_s:.1f} s, to the first result {first_s:.1f} s ({cache}); "
            f"RSS {rss:,.0f} MB ({rss * 2**20 / n:,.0f} bytes/vector); recall@10 {r:.3f}, "
            f"p50 {p50 * 1000:.1f} ms, QPS {qps:,.0f}; {load()}",
            flush=True,
        )
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def monitor_cost(n: int, nq: int, clients: int, rounds: int = 6) -> int:
    """Search throughput with the recall monitor off and at a 1 % sample, rounds interleaved.

    ``clients`` threads search at once (2 keeps both cores of this box busy); the monitor's
    re-runs compete with them during the round, as in a server, and what is still queued when
    the round ends is discarded (the monitor is closed after the clock stops).
    """
    from concurrent.futures import ThreadPoolExecutor

    from index_service.collection import CollectionOptions
    from index_service.recall_monitor import DEFAULT_CPU_BUDGET, RecallMonitor

    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-recall-monitor-"))
    print(
        f"# recall monitor cost: {n:,} x {DIM}-d HNSW32 in-process, {nq} one-query searches a round "
        f"from {clients} threads, {load()}"
    )
    build(data_dir, "c", "HNSW32", n)
    queries = queries_for(nq)
    # off; a 1 % sample without a CPU budget (as before it existed); a 1 % sample with the default
    configs = {
        "off": (0.0, 1.0),
        "1 % unbudgeted": (0.01, 1.0),
        "1 % default budget": (0.01, DEFAULT_CPU_BUDGET),
    }
    qps: dict[str, list[float]] = {name: [] for name in configs}
    sampled: dict[str, list[str]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, (rate, budget) in configs.items():
            monitor = RecallMonitor(rate, 0.9, cpu_budget=budget)
            options = CollectionOptions(recall_monitor=monitor if rate else None)
            engine = Engine(EngineOptions(data_dir, background=False, collection=options))
            collection = engine.collection("c")
            with ThreadPoolExecutor(clients) as pool:
                started = time.perf_counter()
                list(pool.map(lambda q, c=collection: c.search(q[None, :], 10), queries))
                qps[name].append(nq / (time.perf_counter() - started))
            sampled[name].append(f"{monitor.measured}/{monitor.skipped}")
            engine.close(snapshot=False)
    off = statistics.median(qps["off"])
    for name in configs:
        median = statistics.median(qps[name])
        rounds_text = ", ".join(f"{x:,.0f}" for x in qps[name])
        print(f"{name:>20}: median QPS {median:,.0f} ({median / off - 1:+.1%} of off); rounds {rounds_text}")
        if name != "off":
            print(f"{'':>20}  re-run/skipped by the budget per round: {', '.join(sampled[name])}")
    print(f"({load()})")
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("sweep", "compressed", "scale", "monitor"))
    parser.add_argument(
        "-n", type=int, default=None, help="vectors (sweep, compressed: 100000; scale: 5000000)"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--spec", default=COMPRESSED, help="the compressed index (compressed, scale)")
    parser.add_argument("--only", nargs="+", help="sweep: these specs instead of Flat, HNSW32 and --spec")
    parser.add_argument("--ef-search", type=int, default=0, help="sweep: the requests' efSearch (0: default)")
    parser.add_argument("--clients", type=int, default=2, help="monitor: threads searching at once")
    parser.add_argument("--drop-caches", action="store_true", help="scale: restart again, cold")
    args = parser.parse_args()
    if args.mode == "sweep":
        return sweep(
            args.n or 100_000, args.queries, args.only or ["Flat", "HNSW32", args.spec], args.ef_search
        )
    if args.mode == "monitor":
        return monitor_cost(args.n or 20_000, args.queries, args.clients)
    if args.mode == "compressed":
        return compressed(args.n or 100_000, args.queries, args.spec)
    return scale(args.n or 5_000_000, args.queries, args.spec, args.drop_caches)


if __name__ == "__main__":
    sys.exit(main())
