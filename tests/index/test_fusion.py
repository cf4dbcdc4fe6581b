"""Hybrid fusion: exactly k hits when there are enough, the topk tie rule, explanations, the boost."""

from __future__ import annotations

import numpy as np
import pytest

from index_service.fusion import Candidate, FusionMode, FusionParams, fuse, normalised, shared_ranks

pytestmark = pytest.mark.unit

RRF = FusionParams(mode=FusionMode.RRF)
WEIGHTED = FusionParams(mode=FusionMode.WEIGHTED)


def vector(*pairs: tuple[str, float]) -> list[Candidate]:
    return [Candidate(i, s) for i, s in pairs]


@pytest.mark.parametrize("params", [RRF, WEIGHTED], ids=["rrf", "weighted"])
def test_exactly_k_whenever_the_lists_hold_enough(params: FusionParams) -> None:
    rng = np.random.default_rng(1)
    for trial in range(200):
        v_ids = rng.choice(30, size=int(rng.integers(0, 15)), replace=False)
        k_ids = rng.choice(30, size=int(rng.integers(0, 15)), replace=False)
        v = sorted((Candidate(f"i{i:02d}", float(rng.random())) for i in v_ids), key=lambda c: -c.score)
        kw = sorted((Candidate(f"i{i:02d}", float(rng.random() * 9)) for i in k_ids), key=lambda c: -c.score)
        distinct = len({c.id for c in v} | {c.id for c in kw})
        k, offset = int(rng.integers(1, 12)), int(rng.integers(0, 4))
        hits = fuse(v, kw, k, offset=offset, params=params)
        assert len(hits) == max(0, min(k, distinct - offset)), trial
        assert len({h.id for h in hits}) == len(hits)
        whole = fuse(v, kw, offset + k, params=params)
        assert [h.id for h in hits] == [h.id for h in whole[offset:]]  # pages are slices of one order


def test_rrf_scores_and_explanations() -> None:
    v = vector(("a", 0.9), ("b", 0.8), ("c", 0.7))
    kw = [Candidate("c", 12.0, ("red", "dres→dress")), Candidate("d", 3.0, ("red",))]
    hits = {h.id: h for h in fuse(v, kw, 4, params=RRF)}
    assert hits["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert hits["a"].score == pytest.approx(1 / 61)
    c = hits["c"]
    assert (c.vector_score, c.vector_rank, c.keyword_score, c.keyword_rank) == (0.7, 3, 12.0, 1)
    assert c.matched == ("red", "dres→dress")
    d = hits["d"]
    assert (d.vector_score, d.vector_rank, d.keyword_rank) == (None, None, 2)
    assert [h.id for h in fuse(v, kw, 4, params=RRF)] == [
        "c",
        "a",
        "b",
        "d",
    ]  # b and d tie at 1/62: the lower id


def test_ties_go_to_the_lower_id_as_in_topk() -> None:
    # Same fused score for every item: the page is in id order, whatever the list order.
    v = vector(("z", 1.0), ("m", 1.0), ("a", 1.0))
    for params in (RRF, WEIGHTED):
        assert [h.id for h in fuse(v, [], 3, params=params)] == ["a", "m", "z"]
        assert [h.id for h in fuse(v, [], 2, offset=1, params=params)] == ["m", "z"]
    assert shared_ranks(v) == [1, 1, 1]  # equal scores share a rank: a tie passes no order on
    assert shared_ranks(vector(("a", 3.0), ("b", 2.0), ("c", 2.0), ("d", 1.0))) == [1, 2, 2, 4]


def test_weighted_mode_normalises_each_list() -> None:
    assert normalised(vector(("a", 3.0), ("b", 2.0), ("c", 1.0))) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert normalised(vector(("a", 0.3), ("b", 0.3))) == {"a": 1.0, "b": 1.0}
    v = vector(("a", 0.9), ("b", 0.5), ("c", 0.1))
    kw = [Candidate("c", 20.0), Candidate("b", 10.0), Candidate("x", 0.0)]
    hits = {h.id: h.score for h in fuse(v, kw, 4, params=WEIGHTED)}
    assert hits == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0, "x": 0.0})
    leaning = FusionParams(mode=FusionMode.WEIGHTED, keyword_weight=2.0)
    assert [h.id for h in fuse(v, kw, 2, params=leaning)] == ["c", "b"]


def test_exact_keyword_matches_come_first_unless_turned_off() -> None:
    v = vector(*((f"v{i}", 1 - i / 100) for i in range(10)))
    kw = [*vector(("v5", 4.0), ("v6", 3.0), ("v7", 2.5)), Candidate("sku-hit", 1.0, ("abc123",), ("sku",))]
    hits = fuse(v, kw, 3, params=RRF)
    assert hits[0].id == "sku-hit" and hits[0].boosted and hits[0].exact == ("sku",)
    assert not any(h.boosted for h in hits[1:])
    plain = fuse(v, kw, 3, params=FusionParams(mode=FusionMode.RRF, boost_exact=False))
    assert "sku-hit" not in [h.id for h in plain] and not any(h.boosted for h in plain)
    # Boosted items keep the fused order and the id rule among themselves; paging slices it.
    kw2 = [Candidate("b", 2.0, (), ("sku",)), Candidate("a", 2.0, (), ("sku",))]
    assert [h.id for h in fuse([], kw2, 2)] == ["a", "b"]
    assert [h.id for h in fuse(v, kw2, 2, offset=1)] == ["b", "v0"]
    assert fuse(v, kw2, 3, params=WEIGHTED)[0].boosted


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        FusionParams(vector_weight=0, keyword_weight=0)
    with pytest.raises(ValueError):
        FusionParams(vector_weight=-1)
    with pytest.raises(ValueError):
        fuse([], [], -1)
