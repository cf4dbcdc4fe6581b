"""Settings of the index server: flags, each defaulting from ``CLIPSEARCH_INDEX_<FLAG>``.

Standard library only (the ``clipsearch`` CLI builds its parser from it before faiss is
imported). Bad values fail at start with a message naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipsearch._options import float_in, int_in, option
from clipsearch.server.settings import GrpcServerSettings
from index_service.limits import DEFAULT_LIMITS

ENV_PREFIX = "CLIPSEARCH_INDEX_"


@dataclass(frozen=True)
class IndexSettings(GrpcServerSettings):
    ENV_PREFIX = ENV_PREFIX

    port: int = option(50052, "port to bind (0: any free port)", parse=int_in(0, 65535))
    data_dir: Path = option(Path("./clipsearch-data/index"), "directory holding the collections", parse=Path)
    request_threads: int = option(
        16, "threads running blocking request work (SQLite, FAISS) off the event loop", parse=int_in(1, 1024)
    )
    search_threads: int = option(
        max(2, os.cpu_count() or 2), "threads searching shards in parallel", parse=int_in(1, 1024)
    )
    omp_threads: int = option(
        1, "OpenMP threads inside one FAISS call (1: parallel across shards and calls)", parse=int_in(1, 1024)
    )
    inline_search_ms: float = option(
        1.0,
        "searches whose work is expected to take at most this many ms (per query, measured) run "
        "on the event loop's thread, without the hop to a request thread (0: never)",
        parse=float_in(0.0, 1000.0),
    )
    search_batch: int = option(
        0,
        "concurrent one-query searches of the same shape run as one multi-query search, this many "
        "at most (0: off, each alone; see docs/index.md before turning it on)",
        parse=int_in(0, 1024),
    )
    search_batch_parallel: int = option(
        0,
        "merged searches of one shape running at once (0: one per core; each FAISS call uses "
        "--omp-threads threads)",
        parse=int_in(0, 1024),
    )
    snapshot_min_ops: int = option(
        50_000, "writes that trigger a snapshot of a shard", parse=int_in(1, 2**62)
    )
    snapshot_growth: float = option(
        0.5,
        "...and at least this fraction of the shard's items (0: the count alone)",
        parse=float_in(0.0, 100.0),
    )
    snapshot_interval_s: float = option(
        60.0, "seconds after which any unsnapshotted write is snapshotted", parse=float_in(0.01, 86400)
    )
    rebuild_dead_ratio: float = option(
        0.2, "deleted fraction of an HNSW index that triggers a rebuild", parse=float_in(0.01, 1.0)
    )
    exact_fallback_max: int = option(
        20_000,
        "candidates up to which a short approximate search is redone exactly",
        parse=int_in(0, 2**31),
    )
    # -- the query planner and live recall (index_service/planner.py, recall_monitor.py) ---
    plan_exact_items: int = option(
        10_000,
        "selected items up to which a search of an HNSW shard is a brute-force scan of them",
        parse=int_in(0, 2**62),
    )
    plan_exact_read_items: int = option(
        500,
        "...of an IVF/PQ/SQ shard (the vectors are read from the store)",
        parse=int_in(0, 2**62),
    )
    plan_exact_fraction: float = option(
        0.02, "selected fraction up to which an HNSW shard is scanned instead", parse=float_in(0.0, 1.0)
    )
    plan_ann_fraction: float = option(
        0.9,
        "selected fraction from which the ANN index is searched as is (below: breadth / fraction)",
        parse=float_in(0.0, 1.0),
    )
    rerank_oversample: int = option(
        0,
        "candidates per hit a compressed index re-scores exactly (0: the spec's Rerank<N>, else 10)",
        parse=int_in(0, 100),
    )
    recall_sample_rate: float = option(
        0.01,
        "fraction of searches of approximate collections re-run exactly in the background (0: off)",
        parse=float_in(0.0, 1.0),
    )
    recall_cpu_budget: float = option(
        0.02,
        "share of one core the exact re-runs may use (after a re-run, sampling pauses to keep to it)",
        parse=float_in(0.001, 1.0),
    )
    recall_threshold: float = option(
        0.9, "recall@k below which the live recall of a collection is logged", parse=float_in(0.0, 1.0)
    )
    # -- what one request may ask for (index_service/limits.py, docs/reliability.md) ----------
    max_batch_items: int = option(
        DEFAULT_LIMITS.max_batch_items,
        "items in one Upsert, ids in one Get or Delete",
        parse=int_in(1, 10_000_000),
    )
    max_search_hits: int = option(
        DEFAULT_LIMITS.max_search_hits,
        "queries x (k + offset) of one Search",
        parse=int_in(10_000, 100_000_000),
    )
    max_fields: int = option(
        DEFAULT_LIMITS.max_fields,
        "metadata fields of a collection's schema (and of one item)",
        parse=int_in(1, 100_000),
    )
    max_value_bytes: int = option(
        DEFAULT_LIMITS.max_value_bytes,
        "UTF-8 bytes of one metadata string (a keywords list: of all its strings)",
        parse=int_in(1, 2**30),
    )
    max_list_values: int = option(
        DEFAULT_LIMITS.max_list_values, "strings in one keywords value", parse=int_in(1, 1_000_000)
    )
    max_metadata_bytes: int = option(
        DEFAULT_LIMITS.max_metadata_bytes,
        "bytes of one item's metadata as stored (JSON)",
        parse=int_in(64, 2**30),
    )
