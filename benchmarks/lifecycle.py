#!/usr/bin/env python
"""Catalog lifecycle under load (docs/benchmarks.md, "Catalog lifecycle").

    python benchmarks/lifecycle.py swap [--items 100000] [--clients 8] [--swaps 9] [--quick]
    python benchmarks/lifecycle.py backup [--items 1000000] [--quick]

``swap``: CLIENTS closed-loop searchers on an alias while a new collection is bulk-ingested
and the alias is switched SWAPS times (old, new, old, ...: it ends on the new one), then the
old collection is dropped. Reports the searches done and failed (an error, a short answer,
or one from the old collection sent after the last switch) with p50/p99 latency before,
during the ingest, during the switches and after.

``backup``: ITEMS random 512-d vectors ingested, then an online backup while one writer
goes on upserting, and a restore on a second server: backup MB/s and items/s, restore
time. Then restore-and-compare on a sample: the archive holds a prefix of the writes with
every write acknowledged before the backup call, sampled items and vectors are equal, and
searches on the restored server equal the live server's over the same items.

Both servers run as their own processes (``clipsearch serve index``); the clients are the SDK.
The short versions are tests in ``make test``: tests/sdk/test_model_upgrade.py and
tests/index/test_backup_during_writes.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _loadgen import closed_loop
from _servers import serve

from clipsearch import IndexClient

DIM = 512


def batch(number: int, size: int) -> tuple[list[str], np.ndarray, list[dict]]:
    """Batch ``number`` of the writes: the same ids, vectors and metadata every time it is asked."""
    vectors = np.random.default_rng(number).standard_normal((size, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"b{number:06d}-{i:04d}" for i in range(size)]
    return ids, vectors, [{"batch": number}] * size


def fill(client: IndexClient, collection: str, batches: range, size: int, writers: int) -> float:
    """Upserts ``batches`` (each acknowledged durable) on ``writers`` threads; items/s."""
    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda n: client.upsert(collection, *batch(n, size)), batches))
    return len(batches) * size / (time.perf_counter() - started)


def clean(work: Path) -> None:
    """Removes the data and archives of a run; the servers' logs stay (their path is printed)."""
    for path in work.iterdir():
        if path.is_dir() and path.name != "logs":
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
    print(f"# server logs in {work / 'logs'}")


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.python_version()}, load {load()}"


def percentile(latencies: list[float], q: float) -> float:
    return float(np.percentile(latencies, q)) if latencies else float("nan")


# -- swap --------------------------------------------------------------------------------------


def searchers(
    address: str, alias: str, k: int, log: list[list[tuple[float, float, str]]], clients: list[IndexClient]
) -> Callable:
    """A closed_loop call factory: each call searches ``alias`` and logs (sent, done, outcome);
    the outcome is the collection that answered (the id's prefix), "short" or "failed: ..."."""
    queries = np.random.default_rng(7).standard_normal((64, DIM)).astype(np.float32)

    def make_call(index: int) -> Callable[[int], None]:
        client = IndexClient(address)
        clients.append(client)
        mine: list[tuple[float, float, str]] = []
        log.append(mine)

        def call(number: int) -> None:
            sent = time.perf_counter()
            try:
                hits = client.search(alias, queries[number % len(queries)], k=k)
                outcome = hits[0].id.split("-")[0] if len(hits) == k else "short"
            except Exception as error:  # counted, never raised: a failure must not stop the load
                outcome = f"failed: {type(error).__name__}: {error}"
            mine.append((sent, time.perf_counter(), outcome))

        return call

    return make_call


def run_swap(args: argparse.Namespace) -> int:
    items = args.items or (10_000 if args.quick else 100_000)
    phase_s = args.phase_s or (3.0 if args.quick else 10.0)
    interval_s = args.swap_interval_s or (0.5 if args.quick else 2.0)
    size = args.batch
    work = Path(tempfile.mkdtemp(prefix="clipsearch-lifecycle-swap-"))
    print(f"# swap: {items:,} x {DIM}-d per collection, {args.clients} searchers, k={args.k}, {machine()}")
    with (
        serve("index", "--data-dir", str(work / "index"), log_dir=work / "logs") as address,
        IndexClient(address, upsert_batch_size=size) as admin,
    ):
        # Collection v1 is batches [0, n); v2 is [n, 2n): ids say which collection answered.
        n = items // size
        admin.create_collection("v1", DIM, index_spec=args.index)
        fill(admin, "v1", range(n), size, args.writers)
        admin.set_alias("catalog", "v1")
        marks: dict[str, float] = {}
        done, failure, ingest_rate = threading.Event(), [], []

        def orchestrate() -> None:
            try:
                time.sleep(2.0)  # the searchers connect and warm up
                marks["before"] = time.perf_counter()
                time.sleep(phase_s)
                marks["ingest"] = time.perf_counter()
                admin.create_collection("v2", DIM, index_spec=args.index)
                ingest_rate.append(fill(admin, "v2", range(n, 2 * n), size, args.writers))
                marks["swap"] = time.perf_counter()
                for i in range(args.swaps):
                    admin.set_alias("catalog", "v2" if i % 2 == 0 else "v1")
                    time.sleep(interval_s)
                marks["after"] = time.perf_counter()
                admin.drop_collection("v1")  # the old collection goes while the searches go on
                time.sleep(phase_s)
                marks["end"] = time.perf_counter()
            except BaseException as error:
                failure.append(error)
            finally:
                done.set()

        log: list[list[tuple[float, float, str]]] = []
        clients: list[IndexClient] = []
        orchestrator = threading.Thread(target=orchestrate)
        orchestrator.start()
        make_call = searchers(address, "catalog", args.k, log, clients)
        closed_loop(make_call, args.clients, float("inf"), 0.0, until=done)
        orchestrator.join()
        for client in clients:
            client.close()
        if failure:
            raise failure[0]
    clean(work)
    print(f"# bulk ingest of v2 ({n * size:,} items) beside the searches: {ingest_rate[0]:,.0f} items/s")
    return report_swap(log, marks, n, args.swaps)


def report_swap(
    log: list[list[tuple[float, float, str]]], marks: dict[str, float], n: int, swaps: int
) -> int:
    phases = [("before", "before", "ingest"), ("during the ingest", "ingest", "swap")]
    phases += [(f"during {swaps} switches", "swap", "after"), ("after (old dropped)", "after", "end")]

    def answered_by(outcome: str) -> str:  # v1 holds batches [0, n), v2 [n, 2n)
        return "v1" if int(outcome[1:]) < n else "v2"

    print()
    print("| phase | seconds | searches | failed | searches/s | p50 ms | p99 ms | answered by v1 / v2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    failed_total, during = 0, 0
    reasons: Counter = Counter()
    for label, start_key, stop_key in phases:
        start, stop = marks[start_key], marks[stop_key]
        calls = [c for mine in log for c in mine if start <= c[0] < stop]  # by the time sent
        by = Counter(answered_by(o) for _, _, o in calls if o.startswith("b"))
        bad = [o for _, _, o in calls if not o.startswith("b")]
        if start_key == "after":  # sent after the last switch returned: the old one must not answer
            bad += ["stale: answered by v1 after the switch"] * by["v1"]
        reasons.update(bad)
        failed_total += len(bad)
        if start_key in ("ingest", "swap"):
            during += len(calls)
        latencies = [(done - sent) * 1000 for sent, done, _ in calls]
        print(
            f"| {label} | {stop - start:.1f} | {len(calls):,} | {len(bad)} "
            f"| {len(calls) / (stop - start):,.1f} | {percentile(latencies, 50):.1f} "
            f"| {percentile(latencies, 99):.1f} | {by['v1']:,} / {by['v2']:,} |"
        )
    print()
    print(f"searches during the ingest and the switches: {during:,}; failed in all: {failed_total}")
    for reason, count in reasons.most_common(5):
        print(f"  {count} x {reason}")
    print(f"# load average at the end: {load()}")
    return 1 if failed_total else 0


# -- backup ------------------------------------------------------------------------------------


def run_backup(args: argparse.Namespace) -> int:
    items = args.items or (20_000 if args.quick else 1_000_000)
    size = args.batch
    work = Path(tempfile.mkdtemp(prefix="clipsearch-lifecycle-backup-"))
    archive = work / "live.tar"
    print(f"# backup: {items:,} x {DIM}-d, batches of {size}, {machine()}; files in {work}")
    with (
        serve("index", "--data-dir", str(work / "live"), log_dir=work / "logs") as live_address,
        IndexClient(live_address, upsert_batch_size=size, timeout_s=600) as live,
    ):
        live.create_collection("live", DIM, num_shards=args.shards, index_spec=args.index)
        first = items // size
        rate = fill(live, "live", range(first), size, args.writers)
        print(f"ingest: {rate:,.0f} items/s acknowledged durable ({first * size:,} items)", flush=True)
        acknowledged: list[int] = []
        stop = threading.Event()

        writing = threading.Event()

        def write() -> None:  # one writer goes on during the backup
            for number in itertools.takewhile(lambda _: not stop.is_set(), itertools.count(first)):
                live.upsert("live", *batch(number, size))
                acknowledged.append(number)
                writing.set()

        writer = threading.Thread(target=write)
        writer.start()
        writing.wait()
        before = first + len(acknowledged)  # batches [0, before) were acknowledged before the call
        load_before = load()
        started = time.perf_counter()
        archive_bytes = live.backup(archive, collection="live", timeout_s=3600)
        backup_s = time.perf_counter() - started
        during = first + len(acknowledged) - before
        stop.set()
        writer.join()
        with tarfile.open(archive) as tar:
            manifest = tar.extractfile("manifest.json")
            assert manifest is not None
            [entry] = json.loads(manifest.read())["collections"]
        mb, backed_up = archive_bytes / 2**20, entry["items"]
        print(
            f"backup: {backed_up:,} items, {mb:,.0f} MB in {backup_s:.1f} s = {mb / backup_s:,.1f} MB/s, "
            f"{backed_up / backup_s:,.0f} items/s; {during} batches of writes acknowledged meanwhile "
            f"(load {load_before} before)",
            flush=True,
        )
        with (
            serve("index", "--data-dir", str(work / "restored"), log_dir=work / "logs") as there_address,
            IndexClient(there_address, timeout_s=600) as there,
        ):
            started = time.perf_counter()
            [info] = there.restore(archive, timeout_s=3600)
            restore_s = time.perf_counter() - started
            print(
                f"restore on a second server (upload, verify, open): {restore_s:.1f} s = "
                f"{info.item_count / restore_s:,.0f} items/s (load {load()})",
                flush=True,
            )
            compare(live, there, info.item_count, before, size, args.sample)
    clean(work)
    print(f"# load average at the end: {load()}")
    return 0


def compare(
    live: IndexClient, there: IndexClient, restored: int, before: int, size: int, sample: int
) -> None:
    """Restore-and-compare on a sample; raises AssertionError on any difference."""
    batches, rest = divmod(restored, size)
    assert rest == 0, f"{rest} items of a half batch in the backup"
    assert batches >= before, f"the backup lacks acknowledged batches {batches}..{before - 1}"
    older = {"batch": {"lt": batches}}
    assert live.count("live", filter=older) == there.count("live") == restored
    assert there.get("live", batch(batches, size)[0][:5], missing_ok=True) == [], "a later write is in it"
    rng = np.random.default_rng(5)
    for number in sorted(rng.choice(batches, min(sample, batches), replace=False)):
        ids, vectors, metadata = batch(int(number), size)
        picked = sorted(rng.choice(size, 10, replace=False))
        got = there.get("live", [ids[i] for i in picked], include_vectors=True)
        for item, i in zip(got, picked, strict=True):
            np.testing.assert_array_equal(item.vector, vectors[i])
            assert item.metadata == metadata[i], (item.metadata, metadata[i])
    for query in rng.standard_normal((10, DIM)).astype(np.float32):
        assert there.search("live", query, k=10) == live.search("live", query, k=10, filter=older)
    print(
        f"restore-and-compare: {batches:,} batches (a prefix holding all {before:,} acknowledged before "
        f"the call), {min(sample, batches) * 10:,} sampled items equal, 10 searches equal: OK"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", choices=("swap", "backup"))
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    parser.add_argument(
        "--items", type=int, default=0, help="swap: per collection (100,000); backup: 1,000,000"
    )
    parser.add_argument("--batch", type=int, default=1000, help="items per upsert")
    parser.add_argument("--writers", type=int, default=2, help="upsert threads for the bulk ingest")
    parser.add_argument("--index", default="Flat", help="FAISS index spec of the collections")
    parser.add_argument("--shards", type=int, default=2, help="backup: shards of the collection")
    parser.add_argument("--sample", type=int, default=200, help="backup: batches sampled (10 items each)")
    parser.add_argument("--clients", type=int, default=8, help="swap: concurrent searchers")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--swaps", type=int, default=9, help="swap: alias switches (odd: ends on the new)")
    parser.add_argument("--swap-interval-s", type=float, default=0.0, help="swap: between switches (2 s)")
    parser.add_argument("--phase-s", type=float, default=0.0, help="swap: before/after phases (10 s)")
    args = parser.parse_args()
    if args.run == "swap" and args.swaps % 2 == 0:
        parser.error("--swaps must be odd: the last switch is to the new collection")
    return run_swap(args) if args.run == "swap" else run_backup(args)


if __name__ == "__main__":
    raise SystemExit(main())
