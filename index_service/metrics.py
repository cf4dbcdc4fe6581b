"""Prometheus metrics of the index server, in the server's own registry.

Per-RPC counts and latencies come from the shared interceptor
(``clipsearch_rpc_*``); this adds what only the index knows: durable writes, and,
read from the engine at scrape time, items per collection and shard and the age
of each shard's newest snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from index_service.engine import Engine


class IndexMetrics:
    def __init__(self, registry: CollectorRegistry, engine: Callable[[], Engine | None]):
        self.items_written = Counter(
            "clipsearch_index_items_written_total", "Items upserted durably", registry=registry
        )
        runs = Counter(
            "clipsearch_index_search_runs_total",
            "Searches by the thread their work ran on: inline (the event loop's, a cheap search), "
            "worker, or worker_after_wait (tried inline, met a lock or the store)",
            ["ran"],
            registry=registry,
        )
        #: ran -> its counter (looked up once: this is counted on every search).
        self.search_runs = {ran: runs.labels(ran) for ran in ("inline", "worker", "worker_after_wait")}
        registry.register(_EngineCollector(engine))


class _EngineCollector(Collector):
    def __init__(self, engine: Callable[[], Engine | None]):
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        items = GaugeMetricFamily(
            "clipsearch_index_items", "Live items per collection and shard", labels=["collection", "shard"]
        )
        age = GaugeMetricFamily(
            "clipsearch_index_snapshot_age_seconds",
            "Seconds since the shard's newest snapshot",
            labels=["collection", "shard"],
        )
        unsnapshotted = GaugeMetricFamily(
            "clipsearch_index_unsnapshotted_writes",
            "Writes applied since the shard's newest snapshot (replayed from SQLite on restart)",
            labels=["collection", "shard"],
        )
        quarantined = GaugeMetricFamily(
            "clipsearch_index_quarantined_collections",
            "Collections set aside (they could not be loaded, or a write could not be undone)",
        )
        engine = self._engine()
        quarantined.add_metric([], len(engine.quarantined()) if engine is not None else 0)
        now = time.monotonic()
        for name, collection in engine.collections() if engine is not None else ():
            for shard in collection.shards:
                labels = [name, str(shard.number)]
                items.add_metric(labels, shard.rows.live)
                age.add_metric(labels, now - shard.snapshot_time)
                unsnapshotted.add_metric(labels, shard.dirty)
        yield items
        yield age
        yield unsnapshotted
        yield quarantined
        yield from _search_quality(engine)


def _search_quality(engine: Engine | None) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The planner's choices (index_service/planner.py) and the live recall (recall_monitor.py)."""
    plans = CounterMetricFamily(
        "clipsearch_index_search_plans",
        "Shard searches per planner strategy (exact, ann_widened, ann)",
        labels=["collection", "strategy"],
    )
    recall = GaugeMetricFamily(
        "clipsearch_index_recall",
        "Mean recall@k of the sampled searches re-run exactly (last 200 per collection and index)",
        labels=["collection", "index"],
    )
    samples = GaugeMetricFamily(
        "clipsearch_index_recall_samples",
        "Sampled queries the recall gauge averages",
        labels=["collection", "index"],
    )
    skipped = CounterMetricFamily(
        "clipsearch_index_recall_samples_skipped",
        "Searches drawn for the recall sample but not re-run: budget (--recall-cpu-budget pause), queue_full",
        labels=["reason"],
    )
    collections = dict(engine.collections()) if engine is not None else {}
    for name, collection in collections.items():
        counts: dict[str, int] = {}
        for shard in collection.shards:
            for strategy, count in list(shard.plan_counts.items()):
                counts[strategy] = counts.get(strategy, 0) + count
        for strategy, count in sorted(counts.items()):
            plans.add_metric([name, strategy], count)
    monitor = engine.options.collection.recall_monitor if engine is not None else None
    measured = monitor.recall() if monitor is not None else {}
    for (name, spec), (value, count) in sorted(measured.items()):
        if name in collections:
            recall.add_metric([name, spec], value)
            samples.add_metric([name, spec], count)
    if monitor is not None:
        skipped.add_metric(["budget"], monitor.skipped)
        skipped.add_metric(["queue_full"], monitor.dropped)
    yield skipped
    yield plans
    yield recall
    yield samples
