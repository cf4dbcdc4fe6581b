"""Hybrid search reaches issue 17's targets on the demo catalog, in one process (the demo model,
FAISS flat, the lexical index and fusion: benchmarks/_hybrid_stack.py, the figures of
``benchmarks/quality.py --only-hybrid``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from quality_stack import CATALOG_SEED, CHECKPOINT, N_PRODUCTS

from clipsearch.apps.demo.catalog import generate_catalog
from clipsearch.apps.demo.hybrid_queries import build_queries, score
from clipsearch.apps.demo.training.quality import products_from_csv

pytestmark = pytest.mark.quality

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _hybrid_stack import InProcessHybrid  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> InProcessHybrid:
    catalog = generate_catalog(tmp_path_factory.mktemp("catalog"), n_products=N_PRODUCTS, seed=CATALOG_SEED)
    return InProcessHybrid(catalog, model="clipsearch-demo", pretrained=str(CHECKPOINT))


def test_hybrid_meets_the_targets_without_hurting_clean_queries(stack: InProcessHybrid) -> None:
    catalog = stack.catalog
    queries = [q for q in build_queries(products_from_csv(catalog)) if q.family != "synonym"]
    hybrid = score(queries, lambda text, k: stack.search(text, k, "hybrid"))
    vector = score(
        [q for q in queries if q.family.startswith("clean")], lambda t, k: stack.search(t, k, "vector")
    )
    for family, least in (("sku", 0.95), ("brand", 0.95), ("typo", 0.85)):
        assert hybrid[family].top1 >= least, (family, hybrid[family].misses[:10])
    for family in ("clean", "clean+pattern"):
        assert hybrid[family].top1 >= 0.99 * vector[family].top1, (family, hybrid[family].misses[:10])


def test_a_filter_applies_to_both_sides_and_the_page_is_still_exactly_k(stack: InProcessHybrid) -> None:
    products = products_from_csv(stack.catalog)
    cheap = {p.id for p in products if p.price < 40}
    assert 20 < len(cheap) < len(products) - 20
    for query in ("red dres", "KES-DR", "a blue striped t-shirt", "Northwind sneakers", "zzzz"):
        for k in (1, 7, 20):
            hits = stack.search(query, k, "hybrid", allowed_ids=cheap)
            assert len(hits) == k and set(hits) <= cheap, (query, k, hits)
    expensive = next(p for p in products if p.id not in cheap)
    assert stack.search(expensive.sku, 5, "keyword")[0] == expensive.id
    assert expensive.id not in stack.search(expensive.sku, 5, "keyword", allowed_ids=cheap)
    assert all(h.id in cheap and not h.boosted for h in stack.explain(expensive.sku, 5, allowed_ids=cheap))
