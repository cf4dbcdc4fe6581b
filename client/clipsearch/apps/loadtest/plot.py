"""``--plot FILE.png``: latency over time and latency histograms per call type."""

from __future__ import annotations

from pathlib import Path

from clipsearch.apps.loadtest.stats import Recorder


def plot(recorder: Recorder, path: Path, title: str) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'clipsearch[plot]'") from None

    figure, (over_time, histogram) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = sorted({s.kind for s in recorder.samples})
    for kind in kinds:
        ok = [s for s in recorder.samples if s.kind == kind and s.status == "OK"]
        over_time.scatter(
            [s.started_s for s in ok], [s.latency_s * 1000 for s in ok], s=6, label=kind, alpha=0.6
        )
        histogram.hist([s.latency_s * 1000 for s in ok], bins=40, alpha=0.6, label=kind)
    failed = [s for s in recorder.samples if s.status != "OK"]
    if failed:
        over_time.scatter(
            [s.started_s for s in failed],
            [s.latency_s * 1000 for s in failed],
            s=12,
            marker="x",
            c="red",
            label="error",
        )
    over_time.set(xlabel="time since warm-up (s)", ylabel="latency (ms)", title="latency over time")
    histogram.set(xlabel="latency (ms)", ylabel="requests", title="latency histogram")
    over_time.legend()
    histogram.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
