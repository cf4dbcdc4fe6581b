#!/usr/bin/env python
"""Index service vs in-process FAISS, side by side in one run (docs/benchmarks.md, "Index").

512-d normalized vectors drawn around random centres (clustered, like real embeddings).
The server runs as its own process (``python -m index_service``); the in-process
baselines search the *same* indexes, read back from the server's snapshot files.

    .venv/bin/python benchmarks/index_bench.py            # 100k vectors
    .venv/bin/python benchmarks/index_bench.py --quick    # 20k vectors, a minute or two
    .venv/bin/python benchmarks/index_bench.py --scale 1000000   # one 1M-vector collection:
        # durable ingest rate, memory, disk, restart from snapshots and from the store alone,
        # and Flat search service vs in-process at that size (about 10 minutes here)
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import grpc
import numpy as np

from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import vector_to_proto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from index_crash_test import free_port, wait_serving  # noqa: E402

from index_service import snapshots  # noqa: E402

DIM = 512
SNAPSHOT_HEADER = snapshots._HEADER.size


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    x = centres[picks] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def start(data_dir: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "index_service", "--port", str(port), "--data-dir", str(data_dir)]
    command += ["--omp-threads", "1", "--snapshot-interval-s", "3600"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ingest(stub, name: str, vectors: np.ndarray, batch: int = 1000) -> float:
    started = time.perf_counter()
    for s in range(0, len(vectors), batch):
        items = [
            index_pb2.Item(id=f"i{j}", vector=vector_to_proto(vectors[j]))
            for j in range(s, min(s + batch, len(vectors)))
        ]
        stub.Upsert(index_pb2.UpsertRequest(collection=name, items=items), timeout=600)
    return len(vectors) / (time.perf_counter() - started)


def service_search(stub, name, queries, k=10, params=None, batch=1):
    """(QPS, p50 latency s, ids) for sequential requests of ``batch`` queries."""
    latencies, ids = [], []
    started = time.perf_counter()
    for s in range(0, len(queries), batch):
        request = index_pb2.SearchRequest(
            collection=name, queries=[vector_to_proto(q) for q in queries[s : s + batch]], k=k, params=params
        )
        t = time.perf_counter()
        reply = stub.Search(request, timeout=60)
        latencies.append(time.perf_counter() - t)
        ids += [[int(h.id[1:]) for h in r.hits] for r in reply.results]
    return len(queries) / (time.perf_counter() - started), statistics.median(latencies), ids


def local_search(index, queries, k=10, params=None, batch=1):
    latencies, ids = [], []
    started = time.perf_counter()
    for s in range(0, len(queries), batch):
        t = time.perf_counter()
        _, labels = index.search(queries[s : s + batch], k, params=params)
        latencies.append(time.perf_counter() - t)
        ids += labels.tolist()
    return len(queries) / (time.perf_counter() - started), statistics.median(latencies), ids


def recall(found, truth, k=10):
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def load_snapshot(data_dir: Path, name: str) -> faiss.Index:
    path = snapshots.listing(data_dir / "collections" / name / "shard-0000")[0][1]
    payload = np.frombuffer(path.read_bytes()[SNAPSHOT_HEADER:], dtype=np.uint8)
    return faiss.deserialize_index(payload), len(payload)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def restart(data_dir: Path) -> tuple[subprocess.Popen, grpc.Channel, float]:
    """A server (re)started on ``data_dir``: (process, channel, seconds until SERVING)."""
    port = free_port()
    started = time.perf_counter()
    server = start(data_dir, port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 2**30)])
    wait_serving(channel, server, timeout_s=1800)
    return server, channel, time.perf_counter() - started


def stop(server: subprocess.Popen, channel: grpc.Channel) -> float:
    """SIGTERM (which snapshots what changed); seconds until the process exits."""
    channel.close()
    started = time.perf_counter()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=1800)
    return time.perf_counter() - started


def scale_run(n: int, nq: int) -> int:
    """One Flat collection of ``n`` vectors: ingest, memory, disk, restarts, search ratio."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32) / np.sqrt(DIM)
    vectors = np.concatenate([clustered(min(100_000, n - s), rng, centres) for s in range(0, n, 100_000)])
    queries = clustered(nq, rng, centres)
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-index-scale-"))
    print(f"# scale run: {n:,} x {DIM}-d Flat, 1 shard, {os.cpu_count()} CPUs, faiss {faiss.__version__}")
    server, channel, _ = restart(data_dir)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    config = index_pb2.CollectionConfig(name="big", dimension=DIM, num_shards=1, index_spec="Flat")
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config))
    rate = ingest(stub, "big", vectors)
    print(f"durable ingest: {rate:,.0f} vectors/s ({n / rate:.0f} s for {n:,})", flush=True)
    rss = rss_mb(server.pid)
    print(f"server RSS after ingest: {rss:,.0f} MB ({rss * 2**20 / n:,.0f} bytes/vector)", flush=True)
    stop_s = stop(server, channel)
    collection = data_dir / "collections" / "big"
    store_mb = sum(f.stat().st_size for f in collection.glob("store.sqlite*")) / 2**20
    snapshot_mb = sum(f.stat().st_size for f in collection.glob("shard-*/snap-*.faiss")) / 2**20
    print(
        f"graceful stop (snapshot written): {stop_s:.1f} s; disk: store {store_mb:,.0f} MB, "
        f"snapshots {snapshot_mb:,.0f} MB",
        flush=True,
    )
    server, channel, from_snapshot_s = restart(data_dir)
    print(f"restart to SERVING from the snapshot: {from_snapshot_s:.1f} s", flush=True)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    flat, _ = load_snapshot(data_dir, "big")
    rows = []
    for batch in (1, 32):
        l_qps, l_p50, l_ids = local_search(flat, queries, batch=batch)
        s_qps, s_p50, s_ids = service_search(stub, "big", queries, batch=batch)
        assert recall(s_ids, l_ids) > 0.999
        rows.append((batch, s_qps, l_qps, s_p50, l_p50))
    del flat
    stop(server, channel)
    for snap in collection.glob("shard-*/snap-*.faiss"):
        snap.unlink()  # as if every snapshot were torn: the shard is rebuilt from the store
    server, channel, from_store_s = restart(data_dir)
    print(f"restart to SERVING from the store alone (no snapshot): {from_store_s:.1f} s", flush=True)
    stop(server, channel)
    print()
    print("| request | service QPS | in-process QPS | ratio | service p50 ms | in-process p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for batch, s_qps, l_qps, s_p50, l_p50 in rows:
        print(
            f"| {batch} per call | {s_qps:,.1f} | {l_qps:,.1f} | {s_qps / l_qps:.2f} "
            f"| {s_p50 * 1000:.1f} | {l_p50 * 1000:.1f} |"
        )
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--scale", type=int, default=None, metavar="N", help="the one-collection run at N vectors"
    )
    parser.add_argument("-n", type=int, default=None, help="vectors (default 100000, 20000 with --quick)")
    parser.add_argument("--queries", type=int, default=None)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    if args.scale:
        return scale_run(args.scale, args.queries or 64)
    n = args.n or (20_000 if args.quick else 100_000)
    nq = args.queries or (100 if args.quick else 300)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32) / np.sqrt(DIM)
    vectors = clustered(n, rng, centres)
    queries = clustered(nq, rng, centres)
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-index-bench-"))
    print(
        f"# {n} x {DIM}-d, {nq} queries, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print(f"# faiss {faiss.__version__}, omp threads 1 (server and in-process), data in {data_dir}")

    server, channel, _ = restart(data_dir)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    ivf_spec = "IVF256,PQ64"
    specs = {
        "flat1": ("Flat", 1),
        "flat2": ("Flat", 2),
        "flat4": ("Flat", 4),
        "hnsw": ("HNSW32", 1),
        "ivfpq": (ivf_spec, 1),
    }
    rates = {}
    for name, (spec, shards) in specs.items():
        config = index_pb2.CollectionConfig(name=name, dimension=DIM, num_shards=shards, index_spec=spec)
        stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config))
        rates[name] = ingest(stub, name, vectors)
        print(f"ingest {name:6s} ({spec}, {shards} shard): {rates[name]:,.0f} vectors/s acknowledged durable")
    while (
        not stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection="ivfpq"))
        .collection.shards[0]
        .trained
    ):
        time.sleep(0.5)
    rss_before_restart = rss_mb(server.pid)
    server.send_signal(signal.SIGTERM)  # graceful: snapshots everything
    server.wait(timeout=600)
    channel.close()

    server, channel, restart_s = restart(data_dir)
    stub = index_pb2_grpc.IndexServiceStub(channel)
    print(f"restart to SERVING: {restart_s:.2f}s for {5 * n:,} vectors in 5 collections (from snapshots)")
    print(f"server RSS: {rss_before_restart:,.0f} MB before restart, {rss_mb(server.pid):,.0f} MB after")

    flat, flat_bytes = load_snapshot(data_dir, "flat1")
    _, _, truth = local_search(flat, queries, k=10, batch=nq)
    rows = []
    # Flat: service vs in-process, one query per call and 32 per call.
    for batch in (1, 32):
        l_qps, l_p50, _ = local_search(flat, queries, batch=batch)
        s_qps, s_p50, s_ids = service_search(stub, "flat1", queries, batch=batch)
        assert recall(s_ids, truth) > 0.999
        rows.append(("Flat, 1 shard", f"batch {batch}", s_qps, l_qps, s_p50, l_p50, 1.0, flat_bytes / n))
    for shards in (2, 4):
        s_qps, s_p50, s_ids = service_search(stub, f"flat{shards}", queries)
        rows.append(
            (f"Flat, {shards} shards", "batch 1", s_qps, None, s_p50, None, recall(s_ids, truth), None)
        )
    hnsw, hnsw_bytes = load_snapshot(data_dir, "hnsw")
    for ef in (64, 128):
        local_params = faiss.SearchParametersHNSW()
        local_params.efSearch = ef
        l_qps, l_p50, _ = local_search(hnsw, queries, params=local_params)
        s_qps, s_p50, s_ids = service_search(
            stub, "hnsw", queries, params=index_pb2.SearchParams(ef_search=ef)
        )
        rows.append(
            (f"HNSW32 ef={ef}", "batch 1", s_qps, l_qps, s_p50, l_p50, recall(s_ids, truth), hnsw_bytes / n)
        )
    ivf, ivf_bytes = load_snapshot(data_dir, "ivfpq")
    for nprobe in (16, 64):
        local_params = faiss.SearchParametersIVF()
        local_params.nprobe = nprobe
        l_qps, l_p50, _ = local_search(ivf, queries, params=local_params)
        s_qps, s_p50, s_ids = service_search(
            stub, "ivfpq", queries, params=index_pb2.SearchParams(nprobe=nprobe)
        )
        rows.append(
            (
                f"{ivf_spec} nprobe={nprobe}",
                "batch 1",
                s_qps,
                l_qps,
                s_p50,
                l_p50,
                recall(s_ids, truth),
                ivf_bytes / n,
            )
        )
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=600)

    print()
    print(
        "| index | request | service QPS | in-process QPS | ratio | service p50 ms | in-process p50 ms "
        "| added p50 ms | recall@10 | index bytes/vector |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mode, s_qps, l_qps, s_p50, l_p50, rec, bpv in rows:
        ratio = f"{s_qps / l_qps:.2f}" if l_qps else "-"
        added = f"{(s_p50 - l_p50) * 1000:.2f}" if l_p50 else "-"
        local = f"{l_qps:,.0f}" if l_qps else "-"
        local_p50 = f"{l_p50 * 1000:.2f}" if l_p50 else "-"
        size = f"{bpv:,.0f}" if bpv else "-"
        print(
            f"| {name} | {mode} | {s_qps:,.0f} | {local} | {ratio} | {s_p50 * 1000:.2f} | {local_p50} "
            f"| {added} | {rec:.3f} | {size} |"
        )
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
