"""Hypothesis state machine: the index core against a dict, over upsert/delete/search/snapshot/restart.

The engine the server runs (``Engine``, two shards, exact L2) and a plain dict receive
the same random sequence; after every step gets, counts and exhaustive searches must
agree. A restart either closes cleanly or drops the engine without a snapshot (the
state a crash leaves once the commits are durable), then reopens the same directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from reliability_support import report, size

from index_service.config import CollectionConfig, Metric
from index_service.engine import Engine, EngineOptions

pytestmark = pytest.mark.reliability

DIM = 4
IDS = st.sampled_from([f"id{i}" for i in range(24)])
#: Small integer coordinates: exact float sums, and ties that exercise the tie order.
VECTORS = st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM).map(lambda v: np.array(v, np.float32))
METADATA = st.fixed_dictionaries({"n": st.integers(-5, 5), "tag": st.sampled_from(["a", "b", "ü"])})
STEPS = {"upserts": 0, "deletes": 0, "searches": 0, "restarts": 0, "snapshots": 0}


class IndexVersusDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="clipsearch-model-"))
        self.model: dict[str, tuple[np.ndarray, dict]] = {}
        self.engine = self._open()
        self.engine.create_collection(CollectionConfig("m", DIM, Metric.L2, num_shards=2))

    def _open(self) -> Engine:
        return Engine(EngineOptions(data_dir=self.root, background=False, search_threads=1))

    @property
    def collection(self):
        return self.engine.collection("m")

    @rule(items=st.lists(st.tuples(IDS, VECTORS, METADATA), min_size=1, max_size=6))
    def upsert(self, items) -> None:
        self.collection.upsert(
            [i for i, _, _ in items], np.stack([v for _, v, _ in items]), [m for *_, m in items]
        )
        for item_id, vector, metadata in items:  # the last of repeated ids wins
            self.model[item_id] = (vector, metadata)
        STEPS["upserts"] += 1

    @rule(ids=st.lists(IDS, min_size=1, max_size=5))
    def delete(self, ids) -> None:
        existed = len({i for i in ids if i in self.model})
        assert self.collection.delete(ids).count == existed
        for item_id in ids:
            self.model.pop(item_id, None)
        STEPS["deletes"] += 1

    @precondition(lambda self: bool(self.model))
    @rule(query=VECTORS, k=st.integers(1, 30))
    def search(self, query, k) -> None:
        hits = self.collection.search(query[None, :], k=k)[0]
        distances = {i: float(((v - query) ** 2).sum()) for i, (v, _) in self.model.items()}
        expected = sorted(distances.values())[:k]
        assert [-h.score for h in hits] == pytest.approx(expected)
        for hit in hits:
            assert distances[hit.id] == pytest.approx(-hit.score)
            assert hit.metadata == self.model[hit.id][1]
        STEPS["searches"] += 1

    @rule()
    def snapshot(self) -> None:
        self.collection.snapshot_all()
        STEPS["snapshots"] += 1

    @rule(clean=st.booleans())
    def restart(self, clean) -> None:
        self.engine.close(snapshot=clean)
        self.engine = self._open()
        STEPS["restarts"] += 1

    @invariant()
    def same_items(self) -> None:
        assert self.collection.info().item_count == len(self.model)
        got = self.collection.get(sorted(self.model), include_vectors=True)
        for item in got:
            vector, metadata = self.model[item.id]
            assert np.array_equal(item.vector, vector) and item.metadata == metadata

    def teardown(self) -> None:
        self.engine.close(snapshot=False)
        shutil.rmtree(self.root, ignore_errors=True)


def test_index_core_matches_a_dict() -> None:
    examples, steps = size(60, 1000), size(30, 60)
    machine = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )(IndexVersusDict)
    machine.TestCase().runTest()
    report("fuzz_index_model", examples=examples, max_steps_per_example=steps, **STEPS)
