import numpy as np
import pytest

from clipsearch.apps.loadtest.workload import Workload, parse_mix
from clipsearch.errors import InvalidArgumentError
from clipsearch.query import Deadline, Query, combine, page_without
from clipsearch.types import Hit

pytestmark = pytest.mark.unit


def test_query_algebra_keeps_parts_in_order_with_signed_weights() -> None:
    query = Query.image(b"img") + Query.text("red", 0.5) - 2 * Query.text("striped", 0.25)
    assert [(p.kind, p.weight) for p in query.parts] == [("image", 1.0), ("text", 0.5), ("text", -0.5)]
    assert [p.content for p in query.texts] == ["red", "striped"]


def test_combine_is_a_normalized_weighted_sum() -> None:
    vectors = np.eye(3, dtype=np.float32)
    combined = combine(vectors, [1.0, 0.5, -0.5])
    np.testing.assert_allclose(combined, np.array([1.0, 0.5, -0.5]) / np.sqrt(1.5), rtol=1e-6)
    assert combined.dtype == np.float32


@pytest.mark.parametrize(
    ("weights", "message"),
    [([], "at least one"), ([-1.0], "positive weight"), ([1.0, -1.0], "cancel")],
)
def test_combine_refuses_degenerate_queries(weights, message) -> None:
    vectors = np.ones((len(weights), 2), dtype=np.float32) / np.sqrt(2)
    with pytest.raises(InvalidArgumentError, match=message):
        combine(vectors, weights)


def test_page_without_drops_the_item_before_paging() -> None:
    hits = [Hit(id=i, score=1.0) for i in ["a", "self", "b", "c", "d"]]
    assert [h.id for h in page_without(hits, "self", 0, 2)] == ["a", "b"]
    assert [h.id for h in page_without(hits, "self", 2, 2)] == ["c", "d"]


def test_deadline_counts_down_and_never_reaches_zero() -> None:
    deadline = Deadline(0.0)
    assert 0 < deadline.remaining() <= 0.001
    assert 9 < Deadline(10).remaining() <= 10


def test_mix_parsing_and_sampling() -> None:
    mix = parse_mix("text=3,image=1")
    assert mix == {"text": 0.75, "image": 0.25}
    with pytest.raises(InvalidArgumentError, match="unknown call type"):
        parse_mix("video=1")
    with pytest.raises(InvalidArgumentError, match="not all zero"):
        parse_mix("text=0")
    with pytest.raises(InvalidArgumentError, match="need query images"):
        Workload(mix={"image": 1.0}, texts=["x"], images=[])
    workload = Workload(mix=mix, texts=["a", "b"], images=[b"i"], seed=1)
    kinds = [workload.next_query()[0] for _ in range(400)]
    assert 0.65 < kinds.count("text") / 400 < 0.85


def test_text_queries_take_turns_in_each_search_mode() -> None:
    from clipsearch.apps.loadtest.workload import demo_queries, parse_search_modes

    assert parse_search_modes("vector, hybrid,vector") == ("vector", "hybrid")
    with pytest.raises(InvalidArgumentError, match="unknown mode 'fuzzy'"):
        parse_search_modes("vector,fuzzy")
    workload = Workload(mix={"text": 1.0}, texts=["a"], images=[], search_modes=("vector", "hybrid"))
    assert [workload.next_request()[::2] for _ in range(3)] == [
        ("text/vector", "vector"),
        ("text/hybrid", "hybrid"),
        ("text/vector", "vector"),
    ]
    plain = Workload(mix={"text": 1.0}, texts=["a"], images=[])
    assert plain.next_request()[::2] == ("text", "vector"), "one vector mode: named as before"
    texts = demo_queries(40, seed=7)
    assert any(any(ch.isdigit() for ch in t) for t in texts), "SKUs are in the set"
