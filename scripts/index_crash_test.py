#!/usr/bin/env python
"""kill -9 the index server at random moments during an ingest; check no acknowledged write is lost.

Each trial starts ``python -m index_service`` on the same data directory, ingests batches
of new items (and deletes some acknowledged ones) from a client thread, kills the server
with SIGKILL after a random delay, restarts it and checks, over gRPC:

* every acknowledged upsert is present with its exact vector and metadata;
* every acknowledged delete is absent;
* the batch in flight at the kill is all there or all absent (a write is one transaction);
* each item searches back to itself (the FAISS shards agree with the store).

Snapshots are taken every fraction of a second, so kills also land during snapshot writes.

    .venv/bin/python scripts/index_crash_test.py --trials 20     # the long run (docs/index.md)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import metadata_from_proto, metadata_to_proto, vector_from_proto, vector_to_proto

ROOT = Path(__file__).resolve().parent.parent
DIM = 16
COLLECTION = "crash"


@dataclass
class Ledger:
    """What the client knows: acknowledged items and deletes, and the write in flight."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    in_flight: list[str] = field(default_factory=list)
    in_flight_kind: str = ""
    acknowledged_writes: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, spec_args: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "index_service", "--port", str(port), "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # The log goes to a file: an unread pipe fills up and blocks the server's logging.
    with open(data_dir.parent / f"{data_dir.name}-server.log", "ab") as log_file:
        return subprocess.Popen(
            [*command, *spec_args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )


def wait_serving(channel: grpc.Channel, process: subprocess.Popen, timeout_s: float = 120) -> float:
    """Seconds until health says SERVING."""
    started = time.monotonic()
    health = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}; its log is next to the data directory"
            )
        try:
            reply = health.Check(
                health_pb2.HealthCheckRequest(service="clipsearch.v1.IndexService"), timeout=1
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return time.monotonic() - started
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the server did not become SERVING")


def ingest(stub, ledger: Ledger, rng: np.random.Generator, trial: int, stop: threading.Event) -> None:
    batch_no = 0
    while not stop.is_set():
        batch_no += 1
        acked = [i for i in ledger.vectors if i not in ledger.deleted]
        if batch_no % 5 == 0 and acked:
            doomed = [str(x) for x in rng.choice(acked, size=min(10, len(acked)), replace=False)]
            ledger.in_flight, ledger.in_flight_kind = doomed, "delete"
            try:
                stub.Delete(index_pb2.DeleteRequest(collection=COLLECTION, ids=doomed), timeout=30)
            except grpc.RpcError:
                return
            ledger.deleted.update(doomed)
        else:
            ids = [f"t{trial}-b{batch_no}-{j}" for j in range(64)]
            vectors = rng.standard_normal((64, DIM)).astype(np.float32)
            metadata = [{"trial": trial, "batch": batch_no, "tag": f"x{j}"} for j in range(64)]
            items = [
                index_pb2.Item(id=i, vector=vector_to_proto(v), metadata=metadata_to_proto(m))
                for i, v, m in zip(ids, vectors, metadata, strict=True)
            ]
            ledger.in_flight, ledger.in_flight_kind = ids, "upsert"
            try:
                stub.Upsert(index_pb2.UpsertRequest(collection=COLLECTION, items=items), timeout=30)
            except grpc.RpcError:
                return
            for i, v, m in zip(ids, vectors, metadata, strict=True):
                ledger.vectors[i] = v
                ledger.metadata[i] = m
        ledger.in_flight = []
        ledger.acknowledged_writes += 1


def verify(stub, ledger: Ledger) -> list[str]:
    problems: list[str] = []
    live = [i for i in ledger.vectors if i not in ledger.deleted and i not in ledger.in_flight]
    for start in range(0, len(live), 500):
        chunk = live[start : start + 500]
        try:
            got = stub.Get(
                index_pb2.GetRequest(collection=COLLECTION, ids=chunk, include_vectors=True), timeout=60
            )
        except grpc.RpcError as exc:
            problems.append(f"acknowledged items missing: {exc.details()[:300]}")
            continue
        for item in got.items:
            if not np.array_equal(vector_from_proto(item.vector), ledger.vectors[item.id]):
                problems.append(f"{item.id}: vector differs")
            if metadata_from_proto(item.metadata) != ledger.metadata[item.id]:
                problems.append(f"{item.id}: metadata differs")
    gone = sorted(ledger.deleted - set(ledger.in_flight))
    for item_id in gone:
        try:
            stub.Get(index_pb2.GetRequest(collection=COLLECTION, ids=[item_id]), timeout=30)
            problems.append(f"{item_id}: deleted but present")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                problems.append(f"{item_id}: {exc.code()}")
    if ledger.in_flight:
        present = 0
        for item_id in ledger.in_flight:
            try:
                stub.Get(index_pb2.GetRequest(collection=COLLECTION, ids=[item_id]), timeout=30)
                present += 1
            except grpc.RpcError:
                pass
        if present not in (0, len(ledger.in_flight)):
            problems.append(f"the {ledger.in_flight_kind} in flight was applied partly ({present} ids)")
        if ledger.in_flight_kind == "delete" and present == 0:
            ledger.deleted.update(ledger.in_flight)
        if ledger.in_flight_kind == "upsert" and present == 0:
            for item_id in ledger.in_flight:
                ledger.vectors.pop(item_id, None)
                ledger.metadata.pop(item_id, None)
        ledger.in_flight = []
    sample = random.sample(live, min(200, len(live)))
    if sample:
        queries = [vector_to_proto(ledger.vectors[i]) for i in sample]
        reply = stub.Search(index_pb2.SearchRequest(collection=COLLECTION, queries=queries, k=1), timeout=60)
        for item_id, result in zip(sample, reply.results, strict=True):
            if not result.hits or result.hits[0].id != item_id:
                problems.append(f"{item_id}: does not search back to itself")
    deleted_hits = {h.id for r in reply.results for h in r.hits} & ledger.deleted if sample else set()
    if deleted_hits:
        problems.append(f"deleted ids in search results: {sorted(deleted_hits)[:5]}")
    return problems


def run_trials(
    trials: int, *, seed: int = 0, data_dir: Path | None = None, spec: str = "Flat", log=print
) -> dict:
    """Runs the trials; returns figures. Raises AssertionError on the first lost write."""
    rng = np.random.default_rng(seed)
    chooser = random.Random(seed)
    owned = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="clipsearch-crash-")) if owned else data_dir
    server_args = ["--snapshot-interval-s", "0.3", "--snapshot-min-ops", "500", "--search-threads", "2"]
    ledger = Ledger()
    restart_s: list[float] = []
    for trial in range(trials):
        port = free_port()
        process = start_server(data_dir, port, server_args)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            restart_s.append(wait_serving(channel, process))
            stub = index_pb2_grpc.IndexServiceStub(channel)
            config = index_pb2.CollectionConfig(
                name=COLLECTION,
                dimension=DIM,
                metric=index_pb2.METRIC_L2,
                num_shards=2,
                index_spec=spec,
            )
            stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config, exist_ok=True), timeout=30)
            problems = verify(stub, ledger)
            if problems:
                raise AssertionError(f"trial {trial}: after restart: {problems[:10]}")
            stop = threading.Event()
            writer = threading.Thread(target=ingest, args=(stub, ledger, rng, trial, stop))
            before = ledger.acknowledged_writes
            writer.start()
            time.sleep(chooser.uniform(0.2, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            stop.set()
            writer.join(timeout=60)
            log(
                f"trial {trial}: SERVING after {restart_s[-1]:.2f}s, "
                f"{ledger.acknowledged_writes - before} writes acknowledged, then kill -9; "
                f"{len(ledger.vectors) - len(ledger.deleted)} live items so far"
            )
        finally:
            channel.close()
            if process.poll() is None:
                process.kill()
                process.wait()
    # A last start checks the last kill.
    port = free_port()
    process = start_server(data_dir, port, server_args)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        restart_s.append(wait_serving(channel, process))
        problems = verify(index_pb2_grpc.IndexServiceStub(channel), ledger)
        if problems:
            raise AssertionError(f"final check: {problems[:10]}")
    finally:
        channel.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    figures = {
        "trials": trials,
        "acknowledged_writes": ledger.acknowledged_writes,
        "live_items": len(ledger.vectors) - len(ledger.deleted),
        "lost": 0,
        "max_restart_s": max(restart_s),
        "mean_restart_s": sum(restart_s) / len(restart_s),
    }
    log(f"OK: {figures}")
    if owned:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--spec", default="Flat", help="FAISS index spec of the collection (Flat, HNSW32, ...)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    try:
        run_trials(args.trials, seed=args.seed, data_dir=args.data_dir, spec=args.spec)
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
