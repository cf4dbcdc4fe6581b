"""The index sides of the peer benchmark: the same vectors, queries and k in all three.

* clipsearch: ``clipsearch serve index`` (1 shard, ``--omp-threads 1``) through
  ``clipsearch.IndexClient.search``;
* milvus-lite (.db): pymilvus ``MilvusClient`` on a local ``.db``: Milvus Lite 3 (pure
  Python over FAISS) then runs its gRPC server in the client's own process;
* milvus-lite server (``--milvus-mode server`` or ``both``): ``milvus-lite server`` as its
  own process, like ours; both with HNSW M=32 efConstruction=40, ef=64;
* faiss in-process: the server's own indexes read from its snapshot files, searched with
  one OpenMP thread by the same number of threads.

Two collections: ``hnsw`` (HNSW32, efSearch 64, our defaults) and ``flat`` (exact) whose
searches filter on a metadata field with 10 values (one in ten items passes).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _peer_procs import group_of_port, process, project_python, wait_for_log, workers
from _servers import free_port, serve
from index_bench import DIM, SNAPSHOT_HEADER, clustered

from clipsearch import IndexClient
from index_service import snapshots

MILVUS_SIDES = {"db": "milvus-lite (.db)", "server": "milvus-lite server"}
#: --batched: the same server with --search-batch 64 (concurrent searches merged; off by default).
BATCHED = "clipsearch --search-batch 64"
WORKLOADS = {
    "hnsw": {"collection": "hnsw", "filter": False},
    "flat-filter": {"collection": "flat", "filter": True},
}


def make_data(n: int, queries: int, folder: Path) -> tuple[np.ndarray, Path, Path]:
    """index_bench's clustered 512-d unit vectors (seed 0, 1,000 centres); queries from the same centres."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32) / np.sqrt(DIM)
    vectors = np.concatenate([clustered(min(100_000, n - s), rng, centres) for s in range(0, n, 100_000)])
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "queries.npy", clustered(queries, rng, centres))
    return vectors, folder / "vectors.npy", folder / "queries.npy"


def truth(vectors: np.ndarray, queries: np.ndarray, filtered: bool, k: int = 10) -> list[set[int]]:
    scores = queries @ vectors.T
    if filtered:
        scores[:, np.arange(len(vectors)) % 10 != 3] = -np.inf
    return [set(row) for row in np.argsort(-scores, axis=1)[:, :k].tolist()]


@contextlib.contextmanager
def index_sides(n: int, args, logs: Path, milvus_python: Path) -> Iterator[dict]:
    facts: dict = {}
    vectors, vectors_path, queries_path = make_data(n, args.queries, logs / "index-data")
    data_dir = logs / "clipsearch-index"
    started = time.perf_counter()
    with serve("index", "--data-dir", str(data_dir), "--omp-threads", "1", log_dir=logs) as address:
        client = IndexClient(address, timeout_s=600)
        ids = [f"i{i}" for i in range(n)]
        metadata = [{"cat": f"cat{i % 10}"} for i in range(n)]
        for name, spec in (("hnsw", "HNSW32"), ("flat", "Flat")):
            begun = time.perf_counter()
            client.create_collection(name, DIM, index_spec=spec)
            client.upsert(name, ids, vectors, metadata)
            facts[f"clipsearch ingest {name} s"] = time.perf_counter() - begun
        client.close()
    # The graceful stop above wrote every shard's snapshot: the in-process side loads those.
    snapshot_paths = {
        name: str(snapshots.listing(data_dir / "collections" / name / "shard-0000")[0][1])
        for name in ("hnsw", "flat")
    }
    facts["clipsearch load s"] = time.perf_counter() - started
    if args.batched:  # a second server needs a data directory of its own (each locks its own)
        shutil.copytree(data_dir, logs / "clipsearch-index-batched")
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(
            serve("index", "--data-dir", str(data_dir), "--omp-threads", "1", log_dir=logs)
        )
        queries = {"queries": str(queries_path)}
        specs = {
            "clipsearch": (
                project_python(),
                "clipsearch-index",
                {**queries, "address": address},
                logs / "worker-index-ours.log",
            )
        }
        if args.batched:
            batched = stack.enter_context(
                serve(
                    "index",
                    *("--data-dir", str(logs / "clipsearch-index-batched"), "--omp-threads", "1"),
                    *("--search-batch", "64"),
                    log_dir=logs,
                )
            )
            specs[BATCHED] = (
                project_python(),
                "clipsearch-index",
                {**queries, "address": batched},
                logs / "worker-index-batched.log",
            )
        for mode in args.milvus_modes:
            folder = logs / f"milvus-{mode}"
            folder.mkdir()
            uri = str(folder / "bench.db")  # a .db URI: pymilvus runs Milvus Lite in the worker
            if mode == "server":
                port = free_port()
                log = logs / "milvus-server.log"
                command = [str(milvus_python.parent / "milvus-lite"), "server", f"--data-dir={folder}"]
                server = stack.enter_context(
                    process(
                        [*command, f"--port={port}", "--host=127.0.0.1"],
                        log,
                        stop_signal=signal.SIGINT,  # run_server stops and closes its data dir on SIGINT
                    )
                )
                wait_for_log(server, log, "listening on")
                uri = f"http://127.0.0.1:{port}"
            specs[MILVUS_SIDES[mode]] = (
                milvus_python,
                "milvus",
                {**queries, "uri": uri, "vectors": str(vectors_path)},
                logs / f"worker-milvus-{mode}.log",
            )
        specs["faiss in-process"] = (
            project_python(),
            "faiss",
            {**queries, "snapshots": snapshot_paths, "header_bytes": SNAPSHOT_HEADER, "n": n},
            logs / "worker-faiss.log",
        )
        by_side = dict(zip(specs, stack.enter_context(workers(*specs.values())), strict=True))
        for mode in args.milvus_modes:
            begun = time.perf_counter()
            facts[f"{MILVUS_SIDES[mode]} setup"] = by_side[MILVUS_SIDES[mode]].ask(op="setup")
            facts[f"{MILVUS_SIDES[mode]} load s"] = time.perf_counter() - begun
        query_rows = np.load(queries_path)
        facts["recall@10"] = {
            f"{side} {name}": recall(
                worker.ask(op="sample", workload=workload, count=len(query_rows)),
                truth(vectors, query_rows, workload["filter"]),
            )
            for name, workload in WORKLOADS.items()
            for side, worker in by_side.items()
        }
        facts["settings"] = (
            f"{n:,} x {DIM}-d clustered unit vectors (index_bench's generator, seed 0), "
            f"{len(query_rows)} queries cycled, k=10, cosine; hnsw: HNSW32 efConstruction 40 efSearch 64 "
            "(Milvus: M=32, efConstruction=40, ef=64); flat-filter: exact search, filter cat == 'cat3' "
            "(10% of items); clipsearch: `clipsearch serve index --omp-threads 1`, 1 shard, one shared "
            "IndexClient; milvus-lite (.db): one shared MilvusClient on a local .db, which runs Milvus "
            "Lite's gRPC server inside the client's process; milvus-lite server: `milvus-lite server` as "
            "its own process (10 gRPC threads), one shared MilvusClient; faiss in-process: the server's "
            "own snapshot, omp 1, the server's IDSelectorBitmap built once, searched by the same number of "
            "threads; our side asks for efSearch 64 too (its default is 128)"
        )
        servers = {"clipsearch": group_of_port(int(address.rsplit(":", 1)[1]))}
        if args.batched:
            servers[BATCHED] = group_of_port(int(batched.rsplit(":", 1)[1]))
        if "server" in args.milvus_modes:
            servers[MILVUS_SIDES["server"]] = server.pid  # the .db and in-process sides have no server
        yield {"workers": by_side, "facts": facts, "servers": servers}


def recall(found: list[list[int]], expected: list[set[int]]) -> float:
    return float(np.mean([len(set(f) & t) / len(t) for f, t in zip(found, expected, strict=True)]))
