"""Prometheus metrics of the index server (served on ``--metrics-port`` when set)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "clipsearch_index_requests_total", "Index RPCs by method and status code", ["method", "code"]
)
LATENCY = Histogram(
    "clipsearch_index_request_seconds",
    "Index RPC latency (work done off the event loop)",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ITEMS_WRITTEN = Counter("clipsearch_index_items_written_total", "Items upserted durably")
