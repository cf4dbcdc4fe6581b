"""The ``clipsearch loadtest`` subcommand."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from clipsearch.aio import SearchClient
from clipsearch.apps.loadtest.runner import LoadSettings, run_load
from clipsearch.apps.loadtest.stats import format_table, summarize
from clipsearch.apps.loadtest.workload import DEFAULT_TEXTS, Workload, load_images, parse_mix


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", required=True)
    parser.add_argument(
        "--mode", choices=("closed", "open"), default="closed", help="fixed concurrency or rate"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="closed loop: callers in parallel (default 8)"
    )
    parser.add_argument(
        "--rate", type=float, default=10.0, help="open loop: requests per second (default 10)"
    )
    parser.add_argument("--duration", type=float, default=None, help="measured seconds (default 10)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many measured requests")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds excluded from the figures (default 2)"
    )
    parser.add_argument(
        "--max-duration", type=float, default=600.0, help="backstop for --requests (default 600)"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=1000, help="open loop: cap on outstanding requests"
    )
    parser.add_argument("--mix", type=parse_mix, default=None, help="e.g. text=0.6,image=0.3,hybrid=0.1")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--texts", type=Path, help="file of query texts, one per line")
    parser.add_argument("--images", type=Path, help="folder of query images")
    parser.add_argument("--catalog", type=Path, help="take query images from this catalog")
    parser.add_argument("--exact-collection", help="report recall@k against this (Flat) collection")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--plot", type=Path, help="write latency-over-time and histogram PNG here")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    images = load_images(args.images, args.catalog)
    mix = args.mix or ({"text": 0.6, "image": 0.3, "hybrid": 0.1} if images else {"text": 1.0})
    texts = args.texts.read_text().split("\n") if args.texts else list(DEFAULT_TEXTS)
    workload = Workload(mix=mix, texts=[t for t in texts if t.strip()], images=images, seed=args.seed)
    duration = args.duration if (args.duration is not None or args.requests is not None) else 10.0
    settings = LoadSettings(
        collection=args.collection,
        k=args.k,
        mode=args.mode,
        concurrency=args.concurrency,
        rate=args.rate,
        duration_s=duration,
        requests=args.requests,
        warmup_s=args.warmup,
        max_duration_s=args.max_duration,
        max_in_flight=args.max_in_flight,
        timeout_s=args.timeout,
        exact_collection=args.exact_collection,
    )

    async def main():
        async with SearchClient(args.encoder, args.index, timeout_s=args.timeout) as client:
            return await run_load(client, workload, settings)

    recorder, measured_s = asyncio.run(main())
    described = {
        "mode": settings.mode,
        "concurrency": settings.concurrency if settings.mode == "closed" else None,
        "rate": settings.rate if settings.mode == "open" else None,
        "mix": mix,
        "k": settings.k,
        "collection": settings.collection,
    }
    summary = summarize(recorder, measured_s, described)
    if args.plot:
        from clipsearch.apps.loadtest.plot import plot

        summary["plot"] = str(plot(recorder, args.plot, f"clipsearch loadtest ({settings.mode})"))
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0 if summary["ok"] else 1
