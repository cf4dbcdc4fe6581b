#!/usr/bin/env python
"""Soak: a mixed search/upsert/delete load on an index server subprocess; memory and errors over time.

    .venv/bin/python scripts/soak.py                  # one hour (the documented soak)
    .venv/bin/python scripts/soak.py --duration 600   # ten minutes

Starts ``python -m index_service`` on a fresh data directory (snapshots every few seconds),
runs ``--workers`` client threads through the SDK (IndexClient): 70% searches of 8 queries,
20% upserts of 32 items (new ids and replacements), 10% deletes; every ``--sample-s`` it
prints the server's RSS, the item count and the calls and errors so far. At the end the
server is stopped with SIGTERM, restarted, and every acknowledged item is checked back.
Exit status 1 on any error or a lost item.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
from index_crash_test import free_port, start_server, wait_serving

from clipsearch import IndexClient
from clipsearch.errors import ClipsearchError

DIM, COLLECTION = 64, "soak"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


class Load:
    """One worker's share: its own ids (so a replace never races another worker's delete)."""

    def __init__(self, client: IndexClient, worker: int, max_items: int):
        self.client, self.worker, self.max_items = client, worker, max_items
        self.rng, self.nprng = random.Random(worker), np.random.default_rng(worker)
        self.live: dict[str, np.ndarray] = {}
        self.calls: Counter = Counter()
        self.errors: Counter = Counter()
        self.next_id = 0

    def step(self) -> None:
        roll = self.rng.random()
        kind = "search" if roll < 0.7 else "upsert" if roll < 0.9 or len(self.live) < 100 else "delete"
        try:
            if kind == "search":
                self.client.search_batch(
                    COLLECTION, self.nprng.standard_normal((8, DIM)).astype(np.float32), k=10
                )
            elif kind == "upsert":
                fresh = 24 if len(self.live) < self.max_items else 0
                ids = [f"w{self.worker}-{self.next_id + j}" for j in range(fresh)]
                self.next_id += fresh
                ids += self.rng.sample(sorted(self.live), min(8, len(self.live)))
                vectors = self.nprng.standard_normal((len(ids), DIM)).astype(np.float32)
                self.client.upsert(COLLECTION, ids, vectors, [{"t": time.time()}] * len(ids))
                self.live.update(zip(ids, vectors, strict=True))
            else:
                doomed = self.rng.sample(sorted(self.live), min(16, len(self.live)))
                self.client.delete(COLLECTION, doomed)
                for item_id in doomed:
                    self.live.pop(item_id)
            self.calls[kind] += 1
        except (ClipsearchError, grpc.RpcError) as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default 3600)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--max-items", type=int, default=50_000, help="live items at most (per run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the samples and totals here")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-soak-")) / "data"
    data_dir.mkdir()
    flags = ["--snapshot-interval-s", "5", "--snapshot-min-ops", "20000", "--search-threads", "2"]
    port = free_port()
    process = start_server(data_dir, port, flags)
    address = f"127.0.0.1:{port}"
    samples: list[dict] = []
    stop = threading.Event()
    try:
        with grpc.insecure_channel(address) as channel:
            wait_serving(channel, process)
        client = IndexClient(address, timeout_s=30)
        client.create_collection(COLLECTION, DIM, metric="l2", num_shards=2)
        loads = [Load(client, n, args.max_items // args.workers) for n in range(args.workers)]

        def worker(load: Load) -> None:
            while not stop.is_set():
                load.step()

        threads = [threading.Thread(target=worker, args=(load,), daemon=True) for load in loads]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - began) < args.duration:
            time.sleep(min(args.sample_s, max(0.0, args.duration - elapsed)))
            sample = {
                "t_s": round(time.monotonic() - began, 1),
                "rss_mib": round(rss_mib(process.pid), 1),
                "items": sum(len(load.live) for load in loads),
                "calls": sum(sum(load.calls.values()) for load in loads),
                "errors": sum(sum(load.errors.values()) for load in loads),
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if process.poll() is not None:
                break
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        port = free_port()
        process = start_server(data_dir, port, flags)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            restart_s = wait_serving(channel, process)
        with IndexClient(f"127.0.0.1:{port}", timeout_s=120) as check:
            live = {k: v for load in loads for k, v in load.live.items()}
            ids = sorted(live)
            got = {}
            for start in range(0, len(ids), 1000):
                got.update(
                    (i.id, i.vector)
                    for i in check.get(
                        COLLECTION, ids[start : start + 1000], include_vectors=True, missing_ok=True
                    )
                )
        lost = sum(1 for i in ids if i not in got or not np.array_equal(got[i], live[i]))
    finally:
        stop.set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    rss = [s["rss_mib"] for s in samples]
    calls = sum((load.calls for load in loads), Counter())
    errors = sum((load.errors for load in loads), Counter())
    totals = {
        "duration_s": args.duration,
        "workers": args.workers,
        "calls": dict(calls),
        "errors": dict(errors),
        "items_at_end": len(live),
        "lost_after_restart": lost,
        "restart_to_serving_s": round(restart_s, 2),
        "rss_first_mib": rss[0] if rss else None,
        "rss_last_mib": rss[-1] if rss else None,
        "rss_max_mib": max(rss) if rss else None,
        "server_log": str(data_dir.parent / "data-server.log"),
    }
    print("TOTALS " + json.dumps(totals), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "totals": totals}, indent=1))
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
