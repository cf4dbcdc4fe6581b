"""Settings of the index server: flags, each defaulting from ``CLIPSEARCH_INDEX_<FLAG>``.

Importable with the standard library only (the ``clipsearch`` CLI builds its parser from it
before faiss is imported). Bad values fail at start with a message naming the flag.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from clipsearch.server.config import (
    EnvFlags,
    OperationsSettings,
    check,
    env_bool,
    float_in,
    int_in,
    settings_from_args,
)

ENV_PREFIX = "CLIPSEARCH_INDEX_"


@dataclass(frozen=True)
class IndexSettings(OperationsSettings):
    host: str = "127.0.0.1"
    port: int = 50052
    data_dir: Path = Path("./clipsearch-data/index")
    max_message_bytes: int = 64 * 1024 * 1024
    no_reflection: bool = False
    grace_s: float = 10.0
    #: Calls in flight beyond this get RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 256
    #: Threads running blocking request work (SQLite, FAISS) off the event loop.
    request_threads: int = 16
    #: Threads searching shards in parallel (FAISS releases the GIL).
    search_threads: int = max(2, os.cpu_count() or 2)
    #: OpenMP threads inside one FAISS call (1: parallelism comes from shards and requests).
    omp_threads: int = 1
    #: Snapshot a shard once this many writes touched it since its last snapshot...
    snapshot_min_ops: int = 50_000
    #: ...and at least this fraction of its items (writes snapshotted stay O(size), not O(size^2))...
    snapshot_growth: float = 0.5
    #: ...or once it has any unsnapshotted write and this many seconds have passed.
    snapshot_interval_s: float = 60.0
    #: Rebuild an index that cannot remove ids (HNSW) once this fraction of it is deleted.
    rebuild_dead_ratio: float = 0.2
    #: Approximate searches that come back short are redone exactly when at most this many
    #: vectors are candidates (filtered searches, k near the collection size).
    exact_fallback_max: int = 20_000

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        d = cls()
        add = EnvFlags(parser, ENV_PREFIX)
        add("--host", str, d.host, "address to bind")
        add("--port", int_in(0, 65535), d.port, "port to bind (0: any free port)")
        add("--data-dir", Path, d.data_dir, "directory holding the collections")
        add("--max-message-bytes", int_in(1024, 2**31 - 1), d.max_message_bytes, "largest gRPC message")
        add("--no-reflection", env_bool, d.no_reflection, "turn gRPC server reflection off", switch=True)
        add("--grace-s", float_in(0, 3600), d.grace_s, "seconds in-flight calls get after SIGTERM")
        add("--max-concurrent-rpcs", int_in(1, 100_000), d.max_concurrent_rpcs, "calls in flight at most")
        add("--request-threads", int_in(1, 1024), d.request_threads, "threads for blocking request work")
        add("--search-threads", int_in(1, 1024), d.search_threads, "threads searching shards in parallel")
        add("--omp-threads", int_in(1, 1024), d.omp_threads, "OpenMP threads inside one FAISS call")
        add("--snapshot-min-ops", int_in(1, 2**62), d.snapshot_min_ops, "writes that trigger a snapshot")
        add(
            "--snapshot-growth",
            float_in(0.0, 100.0),
            d.snapshot_growth,
            "...and at least this fraction of the shard's items (0: the count alone)",
        )
        add(
            "--snapshot-interval-s",
            float_in(0.01, 86400),
            d.snapshot_interval_s,
            "seconds after which any unsnapshotted write is snapshotted",
        )
        add(
            "--rebuild-dead-ratio",
            float_in(0.01, 1.0),
            d.rebuild_dead_ratio,
            "deleted fraction of an HNSW index that triggers a rebuild",
        )
        add(
            "--exact-fallback-max",
            int_in(0, 2**31),
            d.exact_fallback_max,
            "candidates up to which a short approximate search is redone exactly",
        )

        cls.add_operations_arguments(add)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.port <= 65535, "--port", f"must be in [0, 65535], got {self.port}")

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> IndexSettings:
        return settings_from_args(cls, ns)
