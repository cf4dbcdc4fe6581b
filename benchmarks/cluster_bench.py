#!/usr/bin/env python
"""The cluster mode: 1 vs 2 encoder replicas and 1 vs 2 shard groups, side by side in one run.

For each layout a local Ray cluster (head + one worker node on loopback, as ``clipsearch
cluster up``) serves the demo model; ``--items`` random 128-d vectors are upserted into a
Flat collection through the proxy. Three closed-loop loads of ``--concurrency`` callers,
``--seconds`` each, all through Serve's gRPC proxy with the unchanged SDK:

* encode: one demo-catalog image per ``Embed`` call (the encoder replicas' work);
* search: one query vector per ``Search`` call, k = 10 (the shard groups' work);
* end to end: ``clipsearch loadtest`` (text query -> encode -> search), the CLI unchanged.

The standalone pair (``clipsearch serve encoder --threads 1`` + ``serve index``) runs the
same loads first, for scale; ratios are against the 1-encoder, 1-group cluster.

    .venv/bin/python benchmarks/cluster_bench.py                 # about 6 minutes here
    .venv/bin/python benchmarks/cluster_bench.py --seconds 5 --items 20000   # a quick look

On a 2-core machine every replica competes for the same two cores: the figures show what
the extra replica costs or gains there, not what it gains on its own machine or GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np

from clipsearch import SearchClient
from clipsearch.apps.demo.catalog import generate_catalog
from clipsearch.cluster.app import ClusterConfig
from clipsearch.cluster.local import local_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import serve

STANDALONE = "standalone pair (no Ray)"
LAYOUTS = [("1 encoder, 1 group", 1, 1), ("2 encoders, 1 group", 2, 1), ("1 encoder, 2 groups", 1, 2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_loop(call, concurrency: int, seconds: float) -> tuple[float, float, int]:
    """(calls/s, p50 ms, errors) of ``concurrency`` threads calling back to back."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        i = n
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                call(i)
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
            i += concurrency

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - began), float(np.median(latencies) * 1000), errors[0]


def measure(
    encoder: str, index: str, images: list[bytes], items: int, concurrency: int, seconds: float
) -> dict:
    rng = np.random.default_rng(0)
    with SearchClient(encoder, index, timeout_s=60) as client:
        client.create_collection("bench", num_shards=1, exist_ok=True)
        dim = client.model.embedding_dim
        vectors = rng.standard_normal((items, dim)).astype(np.float32)
        for start in range(0, items, 2000):
            ids = [f"v{i}" for i in range(start, min(start + 2000, items))]
            client.index.upsert(
                "bench", ids, vectors[start : start + 2000], model_fingerprint=client.model.fingerprint
            )
        queries = rng.standard_normal((256, dim)).astype(np.float32)
        inputs = images  # encoded JPEG bytes
        client.encoder.embed_images(inputs[:4])  # warm every path once
        encode = closed_loop(
            lambda i: client.encoder.embed_images([inputs[i % len(inputs)]]), concurrency, seconds
        )
        search = closed_loop(
            lambda i: client.index.search("bench", queries[i % 256], k=10), concurrency, seconds
        )
    loadtest = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "clipsearch.apps.cli",
                "loadtest",
                "--encoder",
                encoder,
                "--index",
                index,
            ),
            *(
                "--collection",
                "bench",
                "--concurrency",
                str(concurrency),
                "--duration",
                str(seconds),
                "--json",
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    end_to_end = json.loads(loadtest.stdout)
    return {
        "encode": encode,
        "search": search,
        "end_to_end": (
            end_to_end["throughput_rps"],
            end_to_end["latency_ms"]["p50"],
            sum(end_to_end["errors"].values()),
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="clipsearch-cluster-bench-"))
    catalog = generate_catalog(root / "catalog", n_products=32, seed=1)
    images = sorted(p.read_bytes() for p in (catalog.parent / "images").glob("*.jpg"))
    print(
        f"# {os.cpu_count()} CPUs, {platform.machine()}; {args.items:,} x 128-d Flat; "
        "demo model, 1 torch thread per replica"
    )
    print(
        f"# per layout: {args.concurrency} callers, {args.seconds:.0f} s per load, through Serve's gRPC proxy"
    )
    results = {}
    with (
        serve("encoder", "--threads", "1", log_dir=root / "logs") as encoder,
        serve("index", "--data-dir", str(root / "standalone"), log_dir=root / "logs") as index,
    ):
        results[STANDALONE] = measure(encoder, index, images, args.items, args.concurrency, args.seconds)
    print(f"{STANDALONE}: {json.dumps(results[STANDALONE])}", flush=True)
    for name, encoders, groups in LAYOUTS:
        config = ClusterConfig(
            data_root=str(root / f"data-{encoders}-{groups}"),
            groups=groups,
            copies=1,
            copy_resource="",
            encoder={"threads": 1},
            encoder_min_replicas=encoders,
            encoder_max_replicas=encoders,
        )
        started = time.perf_counter()
        with local_cluster(config, worker_resources=[{}], grpc_port=free_port(), http_port=free_port()) as lc:
            up_s = time.perf_counter() - started
            results[name] = measure(
                lc.address, lc.address, images, args.items, args.concurrency, args.seconds
            )
        print(f"{name}: cluster up in {up_s:.0f} s; {json.dumps(results[name])}", flush=True)
    base = results[LAYOUTS[0][0]]
    names = [STANDALONE] + [name for name, _, _ in LAYOUTS]
    print()
    print(
        "| layout | encode calls/s | p50 ms | search calls/s | p50 ms | end-to-end req/s | p50 ms | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = results[name]
        cells = []
        for kind in ("encode", "search", "end_to_end"):
            rate, p50, _ = r[kind]
            ratio = f" ({rate / base[kind][0]:.2f}x)" if name != LAYOUTS[0][0] else " (1x)"
            cells += [f"{rate:,.1f}{ratio}", f"{p50:.1f}"]
        errors = sum(r[kind][2] for kind in ("encode", "search", "end_to_end"))
        print(f"| {name} | " + " | ".join(cells) + f" | {errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
