"""Live recall (index_service/recall_monitor.py): sampled searches re-run exactly, as a metric."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from index_service.collection import CollectionOptions
from index_service.config import CollectionConfig, SearchParams
from index_service.engine import Engine, EngineOptions
from index_service.filters import Range
from index_service.metrics import IndexMetrics
from index_service.planner import DEFAULT_POLICY, PlannerPolicy
from index_service.recall_monitor import RecallMonitor, recall_at

pytestmark = pytest.mark.unit

DIM = 64


def _engine(tmp_path, monitor: RecallMonitor, policy: PlannerPolicy = DEFAULT_POLICY) -> Engine:
    options = CollectionOptions(recall_monitor=monitor, planner=policy)
    return Engine(EngineOptions(tmp_path / "index", background=False, collection=options))


def _fill(engine: Engine, name: str, spec: str, n: int = 3000) -> np.ndarray:
    engine.create_collection(CollectionConfig(name=name, dimension=DIM, index_spec=spec))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    engine.collection(name).upsert([f"i{j}" for j in range(n)], x, [{"u": float(j % 10)} for j in range(n)])
    return rng.standard_normal((8, DIM)).astype(np.float32)


def test_a_degraded_index_shows_in_the_gauge_and_the_log(tmp_path, caplog) -> None:
    monitor = RecallMonitor(1.0, 0.9, window=16, cpu_budget=1.0)
    engine = _engine(tmp_path, monitor, PlannerPolicy(exact_items=100, exact_fraction=0.0))  # no scan
    try:
        queries = _fill(engine, "hnsw", "HNSW4")
        collection = engine.collection("hnsw")
        collection.search(queries, 10, params=SearchParams(ef_search=400))
        monitor.drain()
        good, samples = monitor.recall()[("hnsw", "HNSW4")]
        assert good >= 0.9 and samples == len(queries)
        with caplog.at_level(logging.WARNING, logger="index_service.recall_monitor"):
            for _ in range(2):  # the window fills with searches made bad on purpose (efSearch = k)
                collection.search(queries, 10, params=SearchParams(ef_search=10))
                monitor.drain()
        bad, _ = monitor.recall()[("hnsw", "HNSW4")]
        assert bad < 0.9 and bad < good - 0.1
        assert any("below 0.900" in r.getMessage() for r in caplog.records)
        registry = CollectorRegistry()
        IndexMetrics(registry, lambda: engine)
        text = generate_latest(registry).decode()
        gauge = 'clipsearch_index_recall{collection="hnsw"'
        line = next(row for row in text.splitlines() if row.startswith(gauge))
        assert abs(float(line.split()[-1]) - bad) < 1e-9
        assert 'clipsearch_index_search_plans_total{collection="hnsw",strategy="ann"} 3.0' in text
    finally:
        engine.close(snapshot=False)


def test_filters_flat_collections_and_a_full_queue(tmp_path) -> None:
    monitor = RecallMonitor(1.0, 0.9, queue_size=1, cpu_budget=1.0)
    engine = _engine(tmp_path, monitor)
    try:
        queries = _fill(engine, "flat", "Flat", 500)
        engine.collection("flat").search(queries, 5)
        monitor.drain()
        assert monitor.recall() == {}  # Flat is exact: never sampled
        _fill(engine, "hnsw", "HNSW4", 500)
        hnsw = engine.collection("hnsw")
        hnsw.search(queries, 5, filter_=Range("u", lt=3.0))  # filtered: the reference is filtered too
        monitor.drain()
        assert monitor.recall()[("hnsw", "HNSW4")][0] == 1.0  # 150 selected: the planner scans exactly
    finally:
        engine.close(snapshot=False)


def test_off_and_sampled_rates(tmp_path) -> None:
    chances = iter([0.5, 0.001])
    monitor = RecallMonitor(0.01, 0.9, chance=lambda: next(chances), cpu_budget=1.0)
    engine = _engine(tmp_path, monitor)
    try:
        queries = _fill(engine, "hnsw", "HNSW4", 500)
        collection = engine.collection("hnsw")
        collection.search(queries[:1], 5)  # 0.5 >= 0.01: not sampled
        monitor.drain()
        assert monitor.measured == 0
        collection.search(queries[:1], 5)  # 0.001 < 0.01: sampled
        monitor.drain()
        assert monitor.measured == 1
    finally:
        engine.close(snapshot=False)


def test_the_cpu_budget_pauses_sampling(tmp_path) -> None:
    """After a re-run of t seconds, no sample for t / budget - t: skipped, not queued."""
    now = [100.0]
    monitor = RecallMonitor(1.0, 0.9, cpu_budget=0.1, clock=lambda: now[0])
    engine = _engine(tmp_path, monitor)
    try:
        queries = _fill(engine, "hnsw", "HNSW4", 500)
        collection = engine.collection("hnsw")
        real_measure = monitor._measure

        def measure_taking_2_s(job) -> None:  # the clock is ours: the re-run "takes" 2 s
            real_measure(job)
            now[0] += 2.0

        monitor._measure = measure_taking_2_s  # type: ignore[method-assign]
        collection.search(queries[:1], 5)
        monitor.drain()
        assert (monitor.measured, monitor.skipped) == (1, 0)
        now[0] += 17.9  # the pause is 2 / 0.1 - 2 = 18 s from the re-run's end
        for _ in range(3):
            collection.search(queries[:1], 5)
        monitor.drain()
        assert (monitor.measured, monitor.skipped) == (1, 3)
        now[0] += 0.2
        collection.search(queries[:1], 5)
        monitor.drain()
        assert (monitor.measured, monitor.skipped) == (2, 3)
    finally:
        engine.close(snapshot=False)


def test_the_flag_default_is_the_monitor_default() -> None:
    from index_service.recall_monitor import DEFAULT_CPU_BUDGET
    from index_service.settings import IndexSettings

    assert IndexSettings().recall_cpu_budget == DEFAULT_CPU_BUDGET


def test_a_budget_outside_its_range_is_refused() -> None:
    for budget in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="cpu_budget"):
            RecallMonitor(0.01, 0.9, cpu_budget=budget)


def test_recall_at() -> None:
    assert recall_at([], ["a"]) == 1.0
    assert recall_at(["a", "b"], ["b", "c"]) == 0.5
