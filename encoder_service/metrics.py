"""Counters of one encoder: Prometheus series in the server's own registry, plus a snapshot.

Each server instance passes its own ``CollectorRegistry`` (several servers can share a
test process), served on ``--metrics-port``. :meth:`EncoderMetrics.snapshot` gives the same
figures as plain Python values, with the exact batch-size distribution, for tests and
benchmarks.
"""

from __future__ import annotations

import threading
from collections import Counter as CountOf
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from encoder_service.query_cache import QueryCache

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class MetricsSnapshot:
    #: Embed calls and EmbedStream chunks handled by the core.
    requests: int = 0
    #: Inputs received, by kind ("text", "image").
    items: CountOf[str] = field(default_factory=CountOf)
    #: Inputs refused as invalid, by kind.
    invalid_items: CountOf[str] = field(default_factory=CountOf)
    batches: CountOf[str] = field(default_factory=CountOf)
    #: kind -> {batch size: number of batches of that size}.
    batch_sizes: dict[str, CountOf[int]] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
    #: Summed over items: time from queued to taken by the model.
    queue_seconds: dict[str, float] = field(default_factory=dict)
    #: Summed over batches: time the model ran.
    model_seconds: dict[str, float] = field(default_factory=dict)
    #: (kind, reason) -> items dropped before the model ("deadline", "abandoned").
    dropped: CountOf[tuple[str, str]] = field(default_factory=CountOf)
    #: Inputs refused because the queue was full.
    rejected: int = 0
    #: Images by where they were decoded: "device", "cpu", "fallback" (device failed, CPU decided).
    decode_paths: CountOf[str] = field(default_factory=CountOf)
    #: Embed texts answered from the query cache, and texts looked up and not found.
    query_cache_hits: int = 0
    query_cache_misses: int = 0

    def items_in_batches(self, kind: str) -> int:
        return sum(size * count for size, count in self.batch_sizes.get(kind, {}).items())


class EncoderMetrics:
    """Implements the batcher's observer and the core's counters."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = Counter("clipsearch_encoder_requests", "Embed calls and stream chunks", registry=r)
        self._items = Counter("clipsearch_encoder_items", "Inputs received", ["kind"], registry=r)
        self._invalid = Counter(
            "clipsearch_encoder_invalid_items", "Inputs refused as invalid", ["kind"], registry=r
        )
        self._batches = Counter("clipsearch_encoder_batches", "Model batches run", ["kind"], registry=r)
        self._batch_size = Histogram(
            "clipsearch_encoder_batch_size",
            "Items per model batch",
            ["kind"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self._queue_depth = Gauge(
            "clipsearch_encoder_queue_depth", "Items queued for the model", ["kind"], registry=r
        )
        self._queue_seconds = Histogram(
            "clipsearch_encoder_queue_seconds",
            "Time an item waited for the model",
            ["kind"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self._model_seconds = Histogram(
            "clipsearch_encoder_model_seconds",
            "Time one batch ran",
            ["kind"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self._decode_seconds = Histogram(
            "clipsearch_encoder_decode_seconds",
            "Time to decode and preprocess one image",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self._decode_paths = Counter(
            "clipsearch_encoder_image_decodes",
            "Images decoded, by path: device, cpu, fallback (the device failed; the CPU decoder decided)",
            ["path"],
            registry=r,
        )
        self._dropped = Counter(
            "clipsearch_encoder_dropped_items",
            "Items dropped before the model",
            ["kind", "reason"],
            registry=r,
        )
        self._rejected = Counter(
            "clipsearch_encoder_rejected_items", "Inputs refused because the queue was full", registry=r
        )
        self.admitted = Gauge(
            "clipsearch_encoder_admitted_items", "Inputs admitted and not yet taken by the model", registry=r
        )
        self._cache_lookups = Counter(
            "clipsearch_encoder_query_cache_lookups",
            "Embed texts looked up in the query-embedding cache, by result: hit or miss",
            ["result"],
            registry=r,
        )
        self._cache_hit_ratio = Gauge(
            "clipsearch_encoder_query_cache_hit_ratio",
            "Hits over lookups of the query-embedding cache since start (0 with no lookups)",
            registry=r,
        )
        self._cache_entries = Gauge(
            "clipsearch_encoder_query_cache_entries", "Texts held in the query-embedding cache", registry=r
        )
        self._cache_bytes = Gauge(
            "clipsearch_encoder_query_cache_bytes",
            "Bytes the query-embedding cache counts against --query-cache-mib",
            registry=r,
        )
        self._lock = threading.Lock()
        self._state = MetricsSnapshot()

    def watch_query_cache(self, cache: QueryCache) -> None:
        """The cache's size and hit ratio, read when scraped."""
        self._cache_hit_ratio.set_function(lambda: cache.stats().hit_ratio)
        self._cache_entries.set_function(lambda: cache.stats().entries)
        self._cache_bytes.set_function(lambda: cache.stats().bytes)

    # -- the core's counters --------------------------------------------------------------

    def request(self, items_by_kind: dict[str, int]) -> None:
        self._requests.inc()
        with self._lock:
            self._state.requests += 1
            for kind, count in items_by_kind.items():
                if count:
                    self._state.items[kind] += count
        for kind, count in items_by_kind.items():
            if count:
                self._items.labels(kind).inc(count)

    def query_cache(self, hits: int, misses: int) -> None:
        if hits:
            self._cache_lookups.labels("hit").inc(hits)
        if misses:
            self._cache_lookups.labels("miss").inc(misses)
        with self._lock:
            self._state.query_cache_hits += hits
            self._state.query_cache_misses += misses

    def invalid(self, kind: str, count: int = 1) -> None:
        self._invalid.labels(kind).inc(count)
        with self._lock:
            self._state.invalid_items[kind] += count

    def decoded(self, seconds: float, count: int = 1) -> None:
        """``count`` images decoded in ``seconds`` (a device batch: each observed at its share)."""
        histogram = self._decode_seconds
        for _ in range(count):
            histogram.observe(seconds / count)

    def decode_path(self, path: str, count: int = 1) -> None:
        self._decode_paths.labels(path).inc(count)
        with self._lock:
            self._state.decode_paths[path] += count

    # -- BatchObserver --------------------------------------------------------------------

    def queue_depth(self, kind: str, depth: int) -> None:
        self._queue_depth.labels(kind).set(depth)
        with self._lock:
            self._state.queue_depth[kind] = depth

    def batch(self, kind: str, size: int, queue_waits_s: Sequence[float], model_s: float) -> None:
        self._batches.labels(kind).inc()
        self._batch_size.labels(kind).observe(size)
        self._model_seconds.labels(kind).observe(model_s)
        waits = self._queue_seconds.labels(kind)
        for wait in queue_waits_s:
            waits.observe(wait)
        with self._lock:
            state = self._state
            state.batches[kind] += 1
            state.batch_sizes.setdefault(kind, CountOf())[size] += 1
            state.queue_seconds[kind] = state.queue_seconds.get(kind, 0.0) + sum(queue_waits_s)
            state.model_seconds[kind] = state.model_seconds.get(kind, 0.0) + model_s

    def dropped(self, kind: str, reason: str, count: int) -> None:
        self._dropped.labels(kind, reason).inc(count)
        with self._lock:
            self._state.dropped[(kind, reason)] += count

    def rejected(self, count: int) -> None:
        self._rejected.inc(count)
        with self._lock:
            self._state.rejected += count

    # -- reading --------------------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        """A consistent copy of every counter."""
        with self._lock:
            s = self._state
            return MetricsSnapshot(
                requests=s.requests,
                items=CountOf(s.items),
                invalid_items=CountOf(s.invalid_items),
                batches=CountOf(s.batches),
                batch_sizes={kind: CountOf(sizes) for kind, sizes in s.batch_sizes.items()},
                queue_depth=dict(s.queue_depth),
                queue_seconds=dict(s.queue_seconds),
                model_seconds=dict(s.model_seconds),
                dropped=CountOf(s.dropped),
                rejected=s.rejected,
                decode_paths=CountOf(s.decode_paths),
                query_cache_hits=s.query_cache_hits,
                query_cache_misses=s.query_cache_misses,
            )
