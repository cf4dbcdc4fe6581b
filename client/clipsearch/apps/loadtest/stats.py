"""Latency samples and the report: throughput, percentiles per call type and stage, errors."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    kind: str
    #: Seconds since the measured phase began, when the request was scheduled.
    started_s: float
    #: Scheduled-to-done seconds (open loop counts queueing: no coordinated omission).
    latency_s: float
    encode_s: float
    search_s: float
    status: str = "OK"
    #: A text query whose text was sent before in this run (the encoder may have it cached).
    repeat: bool = False


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    dropped: int = 0
    recall: list[float] = field(default_factory=list)
    #: The encoder's query-cache counters over the run (--encoder-metrics): hits, lookups.
    cache: dict[str, float] | None = None

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    array = np.asarray(values) * 1000.0
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "max": float(array.max()), "mean": float(array.mean())}


def summarize(recorder: Recorder, duration_s: float, settings: dict) -> dict:
    ok = [s for s in recorder.samples if s.status == "OK"]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for sample in ok:
        by_kind[sample.kind].append(sample)
    calls: dict[str, dict[str, Any]] = {
        kind: {
            "count": len(samples),
            "latency_ms": percentiles([s.latency_s for s in samples]),
            "encode_ms": percentiles([s.encode_s for s in samples]),
            "search_ms": percentiles([s.search_s for s in samples]),
        }
        for kind, samples in sorted(by_kind.items())
    }
    texts = [s for s in by_kind.get("text", []) if s.encode_s > 0]
    repeats = [s.encode_s for s in texts if s.repeat]
    firsts = [s.encode_s for s in texts if not s.repeat]
    errors = Counter(s.status for s in recorder.samples if s.status != "OK")
    ratios = {
        f"{mode}/vector": calls[f"text/{mode}"]["latency_ms"]["p50"]
        / calls["text/vector"]["latency_ms"]["p50"]
        for mode in ("keyword", "hybrid", "auto")
        if f"text/{mode}" in calls and calls.get("text/vector", {}).get("latency_ms", {}).get("p50")
    }
    return {
        "settings": settings,
        "duration_s": round(duration_s, 3),
        "requests": len(recorder.samples),
        "ok": len(ok),
        "throughput_rps": len(ok) / duration_s if duration_s > 0 else 0.0,
        "latency_ms": percentiles([s.latency_s for s in ok]),
        "calls": calls,
        "errors": dict(errors),
        "dropped_client_side": recorder.dropped,
        "recall_at_k": float(np.mean(recorder.recall)) if recorder.recall else None,
        "text_repeats": {
            "share": len(repeats) / len(texts) if texts else 0.0,
            "encode_ms_first": percentiles(firsts)["p50"],
            "encode_ms_repeat": percentiles(repeats)["p50"],
        },
        "query_cache": _cache_summary(recorder.cache),
        #: p50 latency of text queries in each mode over vector-only, measured side by side.
        "p50_ratio_text": ratios,
    }


def _cache_summary(cache: dict[str, float] | None) -> dict | None:
    if cache is None:
        return None
    lookups = cache["hits"] + cache["misses"]
    return {**cache, "hit_rate": cache["hits"] / lookups if lookups else 0.0}


def format_table(summary: dict) -> str:
    width = max([8, *(len(kind) for kind in summary["calls"])])
    lines = [
        f"{summary['requests']} requests in {summary['duration_s']:.1f}s, {summary['ok']} ok, "
        f"{summary['throughput_rps']:.1f} req/s ({summary['settings']['mode']})",
        "",
        f"{'call':<{width}} {'stage':<7} {'count':>6} "
        + " ".join(f"{name + ' ms':>8}" for name in ("p50", "p90", "p99", "max")),
    ]
    for kind, call in summary["calls"].items():
        for stage, key in (("total", "latency_ms"), ("encode", "encode_ms"), ("search", "search_ms")):
            p = call[key]
            count = str(call["count"]) if stage == "total" else ""
            figures = " ".join(f"{p[name]:>8.1f}" for name in ("p50", "p90", "p99", "max"))
            lines.append(f"{kind:<{width}} {stage:<7} {count:>6} {figures}")
    if summary["errors"]:
        lines.append("")
        lines.append("errors: " + ", ".join(f"{code} {n}" for code, n in sorted(summary["errors"].items())))
    if summary["dropped_client_side"]:
        lines.append(f"not sent (client at --max-in-flight): {summary['dropped_client_side']}")
    repeats = summary["text_repeats"]
    if repeats["share"]:
        lines.append(
            f"text queries seen before in this run: {repeats['share']:.0%}; encode p50 "
            f"{repeats['encode_ms_repeat']:.1f} ms for those, "
            f"{repeats['encode_ms_first']:.1f} ms for first sends"
        )
    cache = summary["query_cache"]
    if cache is not None:
        lines.append(
            f"encoder query cache: {cache['hit_rate']:.1%} hits of {cache['hits'] + cache['misses']:.0f} "
            "lookups during the run (warm-up included)"
        )
    for name, ratio in summary.get("p50_ratio_text", {}).items():
        lines.append(f"text p50 {name}: {ratio:.2f}x")
    if summary["recall_at_k"] is not None:
        lines.append(f"recall@{summary['settings']['k']} vs exact: {summary['recall_at_k']:.4f}")
    return "\n".join(lines)
