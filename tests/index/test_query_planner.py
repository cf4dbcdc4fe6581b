"""The query planner's choices (index_service/planner.py) and the Rerank<N> spec notion."""

from __future__ import annotations

import faiss
import pytest

from clipsearch.errors import InvalidArgumentError
from index_service import planner, rerank, specs
from index_service.config import Metric
from index_service.kinds import DEFAULT_EF_SEARCH, IndexKind
from index_service.planner import IndexTraits, PlannerPolicy

pytestmark = pytest.mark.unit

HNSW = IndexTraits(exact=False, flat_storage=True, compressed=False, ef_search=64)
IVFPQ = IndexTraits(exact=False, flat_storage=False, compressed=True, nprobe=16, nlist=1024)
POLICY = PlannerPolicy(exact_items=1000, exact_read_items=100, exact_fraction=0.02, ann_fraction=0.9)


def test_a_flat_index_is_always_exact() -> None:
    traits = IndexTraits(exact=True, flat_storage=True, compressed=False)
    assert planner.choose(0, traits, 10**6, 10**6, 10, policy=POLICY).strategy == planner.EXACT


@pytest.mark.parametrize(
    ("selected", "strategy", "ef"),
    [
        (500, planner.EXACT, 0),  # few items: a masked scan
        (20_000, planner.EXACT, 0),  # 2 % of a million: still a scan
        (100_000, planner.ANN_WIDENED, 640),  # 10 %: the walk is ten times wider
        (900_000, planner.ANN, 64),  # nearly all: the index as it is
    ],
)
def test_hnsw_by_selectivity(selected: int, strategy: str, ef: int) -> None:
    plan = planner.choose(3, HNSW, selected, 1_000_000, 10, policy=POLICY)
    assert (plan.shard, plan.strategy, plan.ef_search, plan.reranked) == (3, strategy, ef, 0)
    assert plan.reason


def test_the_widened_breadth_is_capped() -> None:
    plan = planner.choose(
        0, HNSW, 30_000, 1_000_000, 10, policy=PlannerPolicy(exact_items=10, exact_fraction=0)
    )
    assert plan.strategy == planner.ANN_WIDENED and plan.ef_search == PlannerPolicy().max_ef_search


def test_a_request_breadth_is_the_base_of_the_widening() -> None:
    plan = planner.choose(0, HNSW, 500_000, 1_000_000, 10, ef_search=100, policy=POLICY)
    assert plan.ef_search == 200


def test_compressed_indexes_rerank_and_widen_nprobe() -> None:
    assert planner.choose(0, IVFPQ, 50, 10**6, 10, policy=POLICY).strategy == planner.EXACT
    widened = planner.choose(0, IVFPQ, 250_000, 10**6, 10, policy=POLICY)
    assert (widened.strategy, widened.nprobe, widened.reranked) == (planner.ANN_WIDENED, 64, 400)
    whole = planner.choose(0, IVFPQ, 10**6, 10**6, 10, policy=POLICY)
    assert (whole.strategy, whole.nprobe, whole.reranked) == (planner.ANN, 16, 100)
    scan = planner.choose(0, IVFPQ, 1_000, 10**6, 10, policy=POLICY)
    assert (scan.nprobe, scan.reranked) == (1024, 400)  # nprobe cannot pass the lists
    spec_own = IndexTraits(
        exact=False, flat_storage=False, compressed=True, nprobe=16, nlist=64, oversample=3
    )
    assert planner.choose(0, spec_own, 10**6, 10**6, 10, policy=POLICY).reranked == 30


def test_rerank_in_the_spec() -> None:
    kind = IndexKind.describe("IVF16,PQ8,Rerank20", 32, Metric.COSINE)
    assert (kind.factory, kind.rerank, kind.trainable) == ("IVF16,PQ8", 20, True)
    assert IndexKind.describe("HNSW16", 32, Metric.COSINE).rerank == 0
    for bad in ("IVF16,PQ8,Rerank0", "IVF16,PQ8,Rerank101", "Rerank5", "IVF16,Rerank5,PQ8"):
        with pytest.raises(InvalidArgumentError) as raised:
            specs.check(bad, 32)
        assert raised.value.field == "config.index_spec"


def test_an_index_saved_at_the_old_ef_search_is_searched_at_the_new_default() -> None:
    """Snapshots written when the default efSearch was 64 carry 64; the planner starts from 128."""
    kind = IndexKind.describe("HNSW32", 8, Metric.COSINE)
    fresh = kind.new_index()
    old = faiss.IndexIDMap(faiss.IndexHNSWFlat(8, 32, faiss.METRIC_INNER_PRODUCT))
    faiss.downcast_index(old.index).hnsw.efSearch = 64
    wide = faiss.IndexIDMap(faiss.IndexHNSWFlat(8, 32, faiss.METRIC_INNER_PRODUCT))
    faiss.downcast_index(wide.index).hnsw.efSearch = 300
    assert DEFAULT_EF_SEARCH == 128
    assert rerank.traits_of(fresh, kind, exact=False).ef_search == 128
    assert rerank.traits_of(old, kind, exact=False).ef_search == 128
    assert rerank.traits_of(wide, kind, exact=False).ef_search == 300
