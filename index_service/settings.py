"""Settings of the index server: flags, each defaulting from ``CLIPSEARCH_INDEX_<FLAG>``.

Importable with the standard library only (the ``clipsearch`` CLI builds its parser from it
before faiss is imported). Bad values fail at start with a message naming the flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "CLIPSEARCH_INDEX_"


@dataclass(frozen=True)
class IndexSettings:
    host: str = "127.0.0.1"
    port: int = 50052
    data_dir: Path = Path("./clipsearch-data/index")
    max_message_bytes: int = 64 * 1024 * 1024
    no_reflection: bool = False
    grace_s: float = 10.0
    #: Prometheus /metrics port; 0 turns it off.
    metrics_port: int = 0
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
        add = _Adder(parser)
        add("--host", str, d.host, "address to bind")
        add("--port", _int_in(0, 65535), d.port, "port to bind (0: any free port)")
        add("--data-dir", Path, d.data_dir, "directory holding the collections")
        add("--max-message-bytes", _int_in(1024, 2**31 - 1), d.max_message_bytes, "largest gRPC message")
        add("--no-reflection", _bool, d.no_reflection, "turn gRPC server reflection off", switch=True)
        add("--grace-s", _float_in(0, 3600), d.grace_s, "seconds in-flight calls get after SIGTERM")
        add("--metrics-port", _int_in(0, 65535), d.metrics_port, "Prometheus metrics port (0: off)")
        add("--max-concurrent-rpcs", _int_in(1, 100_000), d.max_concurrent_rpcs, "calls in flight at most")
        add("--request-threads", _int_in(1, 1024), d.request_threads, "threads for blocking request work")
        add("--search-threads", _int_in(1, 1024), d.search_threads, "threads searching shards in parallel")
        add("--omp-threads", _int_in(1, 1024), d.omp_threads, "OpenMP threads inside one FAISS call")
        add("--snapshot-min-ops", _int_in(1, 2**62), d.snapshot_min_ops, "writes that trigger a snapshot")
        add(
            "--snapshot-interval-s",
            _float_in(0.01, 86400),
            d.snapshot_interval_s,
            "seconds after which any unsnapshotted write is snapshotted",
        )
        add(
            "--rebuild-dead-ratio",
            _float_in(0.01, 1.0),
            d.rebuild_dead_ratio,
            "deleted fraction of an HNSW index that triggers a rebuild",
        )
        add(
            "--exact-fallback-max",
            _int_in(0, 2**31),
            d.exact_fallback_max,
            "candidates up to which a short approximate search is redone exactly",
        )

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> IndexSettings:
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


class _Adder:
    """Adds one flag whose default comes from its environment variable, parsed like the flag."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser

    def __call__(
        self, flag: str, parse: Callable[[str], Any], default: Any, help_: str, *, switch: bool = False
    ) -> None:
        env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        raw = os.environ.get(env)
        if raw is not None:
            try:
                default = parse(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                self.parser.error(f"{flag} (from ${env}={raw!r}): {exc}")
        text = f"{help_} (default {default}; env {env})"
        if switch:
            self.parser.add_argument(flag, action="store_true", default=default, help=text)
        else:
            self.parser.add_argument(flag, type=parse, default=default, help=text)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, "an integer", low, high)


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, "a number", low, high)


def _number_in(cast: Callable[[str], Any], what: str, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = what.split()[-1]
    return parse
