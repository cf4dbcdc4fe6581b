"""The hybrid query set (clipsearch.apps.demo.hybrid_queries): deterministic, every family present,
relevance as documented, typos one edit away."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.apps.demo.catalog import make_products
from clipsearch.apps.demo.hybrid_queries import build_queries, misspell, score
from index_service.analysis import edit_distance

pytestmark = pytest.mark.unit


def test_queries_are_deterministic_and_cover_every_family() -> None:
    products = make_products(300, seed=7)
    queries = build_queries(products)
    assert queries == build_queries(products)
    families = {q.family for q in queries}
    assert families == {"clean", "clean+pattern", "typo", "variant", "synonym", "sku", "brand"}
    by_id = {p.id: p for p in products}
    for query in queries:
        assert query.relevant
        chosen = [by_id[i] for i in query.relevant]
        if query.family == "sku":
            assert (
                len(chosen) == 1
                and query.text.replace("-", "").lower() == chosen[0].sku.replace("-", "").lower()
            )
        elif query.family == "brand":
            assert len({(p.brand, p.category) for p in chosen}) == 1 and chosen[0].brand in query.text
        elif query.family != "clean+pattern":
            assert len({(p.category, p.color) for p in chosen}) == 1
            relevant = {
                p.id for p in products if (p.category, p.color) == (chosen[0].category, chosen[0].color)
            }
            assert query.relevant == relevant


def test_a_misspelling_is_one_edit_and_keeps_the_first_letter() -> None:
    rng = np.random.default_rng(0)
    for word in ("dress", "sneakers", "red", "handbag"):
        for _ in range(50):
            typed = misspell(word, rng)
            assert typed[0] == word[0] and edit_distance(word, typed, 1) == 1


def test_scores_are_top1_and_precision_at_5() -> None:
    products = make_products(300, seed=7)
    queries = [q for q in build_queries(products) if q.family == "clean"]
    perfect = {q.text: sorted(q.relevant) for q in queries}
    figures = score(queries, lambda text, k: perfect[text][:k])["clean"]
    assert (figures.top1, figures.precision_at_5, figures.misses) == (1.0, 1.0, [])
    wrong = score(queries, lambda text, k: ["nothing"] * k)["clean"]
    assert (wrong.top1, wrong.precision_at_5, len(wrong.misses)) == (0.0, 0.0, len(queries))
