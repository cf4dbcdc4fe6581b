"""``clipsearch loadtest``: closed- or open-loop load with a latency report."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.apps.cli.common import add_addresses, require_extra


def add(commands: argparse._SubParsersAction) -> None:
    loadtest = commands.add_parser("loadtest", help="closed- or open-loop load with a latency report")
    _add_arguments(loadtest)
    add_addresses(loadtest)
    loadtest.set_defaults(handler=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    if args.plot:
        require_extra("plot", "loadtest --plot")
    from clipsearch.apps.loadtest.command import run

    return run(args)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--mix", type=_mix, default=None, help="e.g. text=0.6,image=0.3,hybrid=0.1")
    parser.add_argument(
        "--search-mode",
        type=_search_modes,
        default=("vector",),
        help="the index's retrieval for text queries, several taking turns to compare them side by "
        "side: vector (default), keyword, hybrid, auto; e.g. vector,hybrid (reported as text/<mode>)",
    )
    parser.add_argument("-k", type=int, default=10)
    texts = parser.add_mutually_exclusive_group()
    texts.add_argument(
        "--texts", type=Path, help="file of query texts, one per line (the most frequent first with --zipf)"
    )
    texts.add_argument(
        "--demo-queries",
        type=int,
        metavar="N",
        help="query texts: the hybrid query set (typos, SKUs, brands...) of the demo catalog of N products",
    )
    parser.add_argument("--demo-seed", type=int, default=0, help="the demo catalog's seed (default 0)")
    parser.add_argument(
        "--distinct",
        type=int,
        default=None,
        help="without --texts: this many generated product queries (1-1000; default: 8 built-in ones)",
    )
    parser.add_argument(
        "--zipf",
        type=float,
        default=None,
        help="draw texts head-heavy: the i-th with weight 1/i^S (e.g. 1.1, as shoppers repeat head "
        "queries); default: uniformly",
    )
    parser.add_argument(
        "--encoder-metrics",
        help="the encoder's Prometheus URL (http://HOST:PORT/metrics): report its query-cache hit rate",
    )
    parser.add_argument("--images", type=Path, help="folder of query images")
    parser.add_argument("--catalog", type=Path, help="take query images from this catalog")
    parser.add_argument("--exact-collection", help="report recall@k against this (Flat) collection")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--plot", type=Path, help="write latency-over-time and histogram PNG here")
    parser.add_argument("--seed", type=int, default=0)


def _search_modes(text: str) -> tuple[str, ...]:
    from clipsearch.apps.loadtest.workload import parse_search_modes

    return parse_search_modes(text)


def _mix(text: str) -> dict[str, float]:
    from clipsearch.apps.loadtest.workload import parse_mix

    return parse_mix(text)
