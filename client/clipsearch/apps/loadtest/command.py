"""What ``clipsearch loadtest`` runs (its flags are in clipsearch.apps.cli.loadtest)."""

from __future__ import annotations

import argparse
import asyncio
import json

from clipsearch.aio import SearchClient
from clipsearch.apps.loadtest.runner import LoadSettings, run_load
from clipsearch.apps.loadtest.stats import format_table, summarize
from clipsearch.apps.loadtest.workload import (
    DEFAULT_TEXTS,
    Workload,
    demo_queries,
    generated_texts,
    load_images,
)
from clipsearch.errors import InvalidArgumentError

CACHE_COUNTER = "clipsearch_encoder_query_cache_lookups_total"


def cache_counters(url: str) -> dict[str, float]:
    """The encoder's query-cache hits and misses so far, read from its Prometheus text."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError as exc:
        raise InvalidArgumentError(
            f"--encoder-metrics: cannot read {url}: {exc}", field="encoder_metrics"
        ) from exc
    counts = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        for result, name in (("hit", "hits"), ("miss", "misses")):
            if line.startswith(f'{CACHE_COUNTER}{{result="{result}"}}'):
                counts[name] = float(line.split()[-1])
    return counts


def run(args: argparse.Namespace) -> int:
    images = load_images(args.images, args.catalog)
    mix = args.mix or ({"text": 0.6, "image": 0.3, "hybrid": 0.1} if images else {"text": 1.0})
    if args.texts:
        texts = args.texts.read_text().split("\n")
    elif args.demo_queries:
        texts = demo_queries(args.demo_queries, args.demo_seed)
    elif args.distinct:
        texts = generated_texts(args.distinct)
    else:
        texts = list(DEFAULT_TEXTS)
    workload = Workload(
        mix=mix,
        texts=[t for t in texts if t.strip()],
        images=images,
        seed=args.seed,
        zipf=args.zipf,
        search_modes=args.search_mode,
    )
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

    before = cache_counters(args.encoder_metrics) if args.encoder_metrics else None
    recorder, measured_s = asyncio.run(main())
    if before is not None:
        after = cache_counters(args.encoder_metrics)
        recorder.cache = {name: after[name] - before[name] for name in after}
    described = {
        "mode": settings.mode,
        "concurrency": settings.concurrency if settings.mode == "closed" else None,
        "rate": settings.rate if settings.mode == "open" else None,
        "mix": mix,
        "zipf": args.zipf,
        "distinct_texts": len(workload.texts),
        "search_modes": list(workload.search_modes),
        "k": settings.k,
        "collection": settings.collection,
    }
    summary = summarize(recorder, measured_s, described)
    if args.plot:
        from clipsearch.apps.loadtest.plot import plot

        summary["plot"] = str(plot(recorder, args.plot, f"clipsearch loadtest ({settings.mode})"))
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0 if summary["ok"] else 1
