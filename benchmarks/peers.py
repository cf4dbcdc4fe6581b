#!/usr/bin/env python
"""Peer comparison: our encoder vs NVIDIA PyTriton (and a naive grpcio server), our index vs Milvus Lite.

Not part of `make test`. The peers install on first run into their own venvs under
var/peers/ (pinned: nvidia-pytriton 0.7.0; pymilvus 3.0.2 + milvus-lite 3.2.2). Every side
is a real server process (Milvus Lite: in its client's process, as a .db URI runs it)
called through its own client library by the same closed-loop load generator; rounds
are interleaved (us, peer, us, peer, ...) and the table gives the median, every round, and
our throughput over the peer's.

    python benchmarks/peers.py --quick                  # a smoke run, ~4 minutes on 2 shared cores
    python benchmarks/peers.py                          # everything, 10 s rounds (long)
    python benchmarks/peers.py --only encoder-demo-texts --rounds 5 --seconds 10 --callers 32
    python benchmarks/peers.py --install-only           # just make the peers' venvs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _peer_procs import group_cpu_s

WORKLOADS = {
    "encoder-demo-texts": ("encoder", "demo", "texts"),
    "encoder-demo-images": ("encoder", "demo", "images"),
    "encoder-vitb32-texts": ("encoder", "ViT-B-32", "texts"),
    "encoder-vitb32-images": ("encoder", "ViT-B-32", "images"),
    "index-hnsw": ("index", "", "hnsw"),
    "index-flat-filter": ("index", "", "flat-filter"),
}
RUNS = Path(__file__).resolve().parents[1] / "var" / "peers" / "runs"  # gitignored, like the venvs
#: --quick: the headline cells only ("N" is --callers; index clients as given).
QUICK_CELLS = {
    "encoder-demo-texts": ["N", 1],
    "encoder-demo-images": ["N"],
    "encoder-vitb32-texts": ["N"],
    "index-hnsw": [1, 8],
    "index-flat-filter": [8],
}


@dataclass
class Round:
    rate: float
    p50: float
    p99: float
    calls: int
    #: CPU ms per call over the whole round (warm-up and drain included): the server's process
    #: group (None where the server runs inside the client) and the load worker's.
    server_cpu_ms: float | None
    client_cpu_ms: float


def measure(sides: dict, workload: dict, callers: int, rounds: int, seconds: float, warmup_s: float) -> dict:
    """{side: [Round, ...]}, sides interleaved within each round in the order of ``workers``."""
    workers, servers = sides["workers"], sides["servers"]
    out: dict[str, list[Round]] = {side: [] for side in workers}
    for number in range(rounds):
        for side, worker in workers.items():
            server = servers.get(side)
            cpu_before = (group_cpu_s(server) if server else 0.0), group_cpu_s(worker.child.pid)
            asked = time.perf_counter()
            answer = worker.ask(
                op="run", workload=workload, callers=callers, seconds=seconds, warmup_s=warmup_s
            )
            if answer["errors"]:
                raise SystemExit(f"{side} failed during the round:\n{answer['errors'][0]}")
            latencies = np.array(answer["latencies_ms"] or [np.nan])
            result = Round(
                answer["work"] / answer["seconds"],
                float(np.percentile(latencies, 50)),
                float(np.percentile(latencies, 99)),
                answer["calls"],
                (group_cpu_s(server) - cpu_before[0]) * 1000 / answer["all_calls"] if server else None,
                (group_cpu_s(worker.child.pid) - cpu_before[1]) * 1000 / answer["all_calls"],
            )
            out[side].append(result)
            print(
                f"    round {number + 1} {side:>17}: {result.rate:8.1f}/s  p50 {result.p50:8.1f} ms  "
                f"p99 {result.p99:8.1f} ms  CPU/item {result.server_cpu_ms or 0:5.2f} + "
                f"{result.client_cpu_ms:5.2f} ms  ({result.calls} calls, "
                f"{time.perf_counter() - asked:.1f} s)",
                flush=True,
            )
    return out


def summary(rounds_by_side: dict) -> dict:
    ours = rounds_by_side[next(iter(rounds_by_side))]
    table = {}
    for side, rounds in rounds_by_side.items():
        table[side] = {
            "rounds": [vars(r) for r in rounds],
            "median_rate": statistics.median(r.rate for r in rounds),
            "median_p50_ms": statistics.median(r.p50 for r in rounds),
            "median_p99_ms": statistics.median(r.p99 for r in rounds),
            "median_server_cpu_ms": (
                statistics.median(r.server_cpu_ms for r in rounds)
                if rounds[0].server_cpu_ms is not None
                else None
            ),
            "median_client_cpu_ms": statistics.median(r.client_cpu_ms for r in rounds),
            "ours_over_side": statistics.median(
                o.rate / r.rate if r.rate else float("inf") for o, r in zip(ours, rounds, strict=True)
            ),
        }
    return table


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.machine(),
    )
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    import faiss
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "gpu": "none used (CPU only)",
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu(side: dict) -> str:
    """ "server + client" CPU ms per item; one figure where the server runs inside the client."""
    client = f"{side['median_client_cpu_ms']:.2f}"
    server = side["median_server_cpu_ms"]
    return f"{server:.2f} + {client}" if server is not None else f"{client} (one process)"


def markdown(group: dict, machine_info: dict) -> str:
    m = machine_info
    lines = [
        f"### {group['name']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['gpu']}; Python {m['python']}, "
        f"torch {m['torch']}, faiss {m['faiss']}. Load average (1/5/15 min) {group['load_before']} before, "
        f"{group['load_after']} after.",
        "",
        f"Settings: {group['facts'].get('settings', '')}. {group['timing']}",
        "",
        "| workload | callers | side | items/s (median) | every round | p50 ms | p99 ms "
        "| CPU ms/item server + client | clipsearch / side |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for cell in group["cells"]:
        for side, s in cell["sides"].items():
            ratio = "-" if side == "clipsearch" else f"**{s['ours_over_side']:.2f}x**"
            every = " / ".join(f"{r['rate']:.1f}" for r in s["rounds"])
            lines.append(
                f"| {cell['workload']} | {cell['callers']} | {side} | {s['median_rate']:,.1f} | {every} "
                f"| {s['median_p50_ms']:.1f} | {s['median_p99_ms']:.1f} | {cpu(s)} | {ratio} |"
            )
        if cell.get("ceiling"):
            ours = cell["sides"]["clipsearch"]["median_rate"]
            lines.append(
                f"| {cell['workload']} | - | open_clip in-process, batches of {cell['ceiling_batch']} "
                "(ceiling) "
                f"| {cell['ceiling']:,.1f} | | | | | {ours / cell['ceiling']:.2f}x |"
            )
    facts = {k: v for k, v in group["facts"].items() if k != "settings"}
    lines += ["", "Facts: " + json.dumps(facts, default=str)]
    return "\n".join(lines)


def run_encoder(model: str, cells: dict[str, list[int]], args, logs: Path, installs: dict) -> dict:
    """``cells``: {"texts" or "images": [callers, ...]}."""
    from _peer_encoder import ceiling, cpu_max_batch, encoder_sides

    from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL

    name, pretrained = (DEMO_MODEL, str(DEMO_CHECKPOINT)) if model == "demo" else (model, "random")
    big = model != "demo"
    seconds = args.seconds * (args.big_model_factor if big else 1)
    warmup = args.warmup * (args.big_model_factor if big else 1)
    batch = cpu_max_batch()
    group = {"name": f"Encoder: {name}", "load_before": load(), "cells": []}
    print(f"\n== encoder {name} ({Path(pretrained).name}) ==", flush=True)
    with encoder_sides(name, pretrained, args, logs, installs["pytriton"].python) as sides:
        group["facts"] = sides["facts"]
        print(f"  up in {sides['facts']['startup_s']:.0f} s; cross-check {sides['facts']['cross_check']}")
        for kind in cells:
            for callers in cells[kind]:
                print(f"  {name} {kind}, {callers} caller(s):", flush=True)
                rounds = measure(sides, {"kind": kind}, callers, args.rounds, seconds, warmup)
                group["cells"].append({"workload": f"{kind}", "callers": callers, "sides": summary(rounds)})
            # The ceiling: servers idle, open_clip in this process at the servers' max batch size.
            group["cells"][-1]["ceiling"] = ceiling(name, pretrained, kind, batch, seconds, args.threads)
            group["cells"][-1]["ceiling_batch"] = batch
    group["load_after"] = load()
    group["timing"] = f"{args.rounds} rounds of {seconds:g} s after a {warmup:g} s warm-up each."
    return group


def run_index(cells: dict[str, list[int]], args, logs: Path, installs: dict) -> dict:
    """``cells``: {"hnsw" or "flat-filter": [clients, ...]}."""
    from _peer_index import WORKLOADS as INDEX_WORKLOADS
    from _peer_index import index_sides

    group = {"name": f"Index: {args.scale:,} vectors", "load_before": load(), "cells": []}
    print(f"\n== index, {args.scale:,} vectors ==", flush=True)
    with index_sides(args.scale, args, logs, installs["milvus"].python) as sides:
        group["facts"] = sides["facts"]
        print(f"  recall@10: {sides['facts']['recall@10']}", flush=True)
        for name in cells:
            for clients in cells[name]:
                print(f"  {name}, {clients} client(s):", flush=True)
                rounds = measure(
                    sides, INDEX_WORKLOADS[name], clients, args.rounds, args.seconds, args.warmup
                )
                group["cells"].append({"workload": name, "callers": clients, "sides": summary(rounds)})
    group["load_after"] = load()
    group["timing"] = f"{args.rounds} rounds of {args.seconds:g} s after a {args.warmup:g} s warm-up each."
    return group


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: short rounds, 10k vectors, fewer cells"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), help="these workloads only")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per cell (default 3)")
    parser.add_argument("--seconds", type=float, help="measured seconds per round (default 10, quick 1)")
    parser.add_argument(
        "--warmup", type=float, help="warm-up seconds before each round (default 2, quick 0.5)"
    )
    parser.add_argument(
        "--big-model-factor",
        type=float,
        help="ViT-B-32 rounds and warm-ups are this many times longer (default 1, quick 3)",
    )
    parser.add_argument("--callers", type=int, default=32, help="concurrent encoder callers (default 32)")
    parser.add_argument(
        "--sdk-channels",
        choices=("shared", "per-thread"),
        default="shared",
        help="callers of our encoder (and the naive one) share one EncoderClient or have one each",
    )
    parser.add_argument("--no-lone", action="store_true", help="skip the 1-caller encoder cells")
    parser.add_argument("--index-clients", default="1,8", help="index client counts (default 1,8)")
    parser.add_argument("--scale", type=int, help="index vectors (default 100000, quick 10000)")
    parser.add_argument("--queries", type=int, help="index queries, cycled (default 300, quick 100)")
    parser.add_argument(
        "--milvus-mode",
        choices=("db", "server", "both", "none"),
        help="Milvus Lite on a .db in the client's process, as its own server process, both, or none "
        "(default both, quick db)",
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="index: also our server with --search-batch 64 (concurrent searches merged), interleaved",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in every encoder (default 1; 0: each side's own default)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the run's vectors and indexes (logs are always kept)"
    )
    parser.add_argument("--install-only", action="store_true", help="make the peers' venvs and stop")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or 3
    args.seconds = args.seconds or (1.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    args.big_model_factor = args.big_model_factor or (3.0 if quick else 1.0)
    args.scale = args.scale or (10_000 if quick else 100_000)
    args.queries = args.queries or (100 if quick else 300)
    args.only = args.only or (list(QUICK_CELLS) if quick else list(WORKLOADS))
    mode = args.milvus_mode or ("db" if quick else "both")
    args.milvus_modes = {"both": ["db", "server"], "none": []}.get(mode, [mode])
    index_clients = [int(c) for c in args.index_clients.split(",")]
    args.cells = {}
    for workload in args.only:
        if quick and workload in QUICK_CELLS:
            cells = [args.callers if c == "N" else c for c in QUICK_CELLS[workload]]
        elif WORKLOADS[workload][0] == "index":
            cells = index_clients
        else:
            cells = [args.callers] if args.no_lone else [args.callers, 1]
        args.cells[workload] = cells
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from _peer_envs import ENVS, ensure

    wanted = {WORKLOADS[w][0] for w in args.only}
    needed = [name for name, group in (("pytriton", "encoder"), ("milvus", "index")) if group in wanted]
    installs = {name: ensure(ENVS[name]) for name in (list(ENVS) if args.install_only else needed)}
    for installed in installs.values():
        print(installed.describe(), flush=True)
    if args.install_only:
        return 0
    started, load_before = time.perf_counter(), load()
    info = machine()
    print(f"machine: {info}; load average {load_before}", flush=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=RUNS))
    print(f"logs: {logs}", flush=True)
    groups = []
    try:
        for model in ("demo", "ViT-B-32"):
            cells = {
                WORKLOADS[w][2]: c for w, c in args.cells.items() if WORKLOADS[w][:2] == ("encoder", model)
            }
            if cells:
                groups.append(run_encoder(model, cells, args, logs, installs))
        cells = {WORKLOADS[w][2]: c for w, c in args.cells.items() if WORKLOADS[w][0] == "index"}
        if cells:
            groups.append(run_index(cells, args, logs, installs))
    finally:
        if not args.keep_data:  # vectors, our index's data dir, Milvus's: hundreds of MB at 100k
            for data in [logs / "index-data", logs / "clipsearch-index", *logs.glob("milvus-*/")]:
                if data.is_dir():
                    shutil.rmtree(data)
    print()
    for group in groups:
        print(markdown(group, info) + "\n")
    total = time.perf_counter() - started
    print(f"whole run: {total:.0f} s; load average {load_before} before, {load()} after")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": {k: v for k, v in vars(args).items() if k != "json"},
                    "installs": {k: {**vars(v), "python": str(v.python)} for k, v in installs.items()},
                    "load_before": load_before,
                    "load_after": load(),
                    "seconds": total,
                    "groups": groups,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
