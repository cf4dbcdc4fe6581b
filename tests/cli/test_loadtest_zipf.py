"""clipsearch loadtest's head-heavy text mix (--zipf, --distinct) and its query-cache report."""

from __future__ import annotations

from collections import Counter

import pytest

from clipsearch.apps.loadtest.command import cache_counters
from clipsearch.apps.loadtest.stats import Recorder, Sample, format_table, summarize
from clipsearch.apps.loadtest.workload import Workload, generated_texts
from clipsearch.errors import InvalidArgumentError

pytestmark = pytest.mark.unit


def test_generated_texts_are_distinct_and_bounded() -> None:
    texts = generated_texts(1000)
    assert len(set(texts)) == 1000 and texts[:2] == ["red dress", "red sneakers"]
    with pytest.raises(InvalidArgumentError):
        generated_texts(1001)


def test_zipf_draws_the_head_most_and_flags_repeats() -> None:
    texts = generated_texts(200)
    workload = Workload(mix={"text": 1.0}, texts=texts, images=[], seed=3, zipf=1.1)
    drawn = [workload.next_text() for _ in range(5000)]
    counts = Counter(text for text, _ in drawn)
    assert counts[texts[0]] > counts[texts[1]] > counts[texts[9]] > counts[texts[150]]
    # With s = 1.1 over 200 texts the first is drawn ~1/5.1 of the time.
    assert 0.15 < counts[texts[0]] / 5000 < 0.25
    seen: set[str] = set()
    for text, repeat in drawn:
        assert repeat == (text in seen)
        seen.add(text)


def test_uniform_stays_the_default() -> None:
    workload = Workload(mix={"text": 1.0}, texts=["a", "b"], images=[], seed=1)
    counts = Counter(workload.next_text()[0] for _ in range(2000))
    assert 800 < counts["a"] < 1200


def test_a_non_positive_exponent_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        Workload(mix={"text": 1.0}, texts=["a"], images=[], zipf=0)


def test_the_report_shows_repeats_and_the_cache_hit_rate() -> None:
    recorder = Recorder()
    for i in range(10):
        repeat = i >= 4
        encode = 0.001 if repeat else 0.006
        recorder.add(Sample("text", i * 0.1, encode + 0.002, encode, 0.002, "OK", repeat))
    recorder.cache = {"hits": 6.0, "misses": 4.0}
    summary = summarize(recorder, 1.0, {"mode": "closed", "k": 10})
    assert summary["text_repeats"]["share"] == pytest.approx(0.6)
    assert summary["text_repeats"]["encode_ms_repeat"] == pytest.approx(1.0)
    assert summary["text_repeats"]["encode_ms_first"] == pytest.approx(6.0)
    assert summary["query_cache"]["hit_rate"] == pytest.approx(0.6)
    table = format_table(summary)
    assert "60.0% hits of 10 lookups" in table and "seen before in this run: 60%" in table


def test_cache_counters_read_the_prometheus_text(tmp_path) -> None:
    page = tmp_path / "metrics"
    page.write_text(
        "# HELP x\n"
        'clipsearch_encoder_query_cache_lookups_total{result="hit"} 12.0\n'
        'clipsearch_encoder_query_cache_lookups_total{result="miss"} 3.0\n'
    )
    assert cache_counters(page.as_uri()) == {"hits": 12.0, "misses": 3.0}
