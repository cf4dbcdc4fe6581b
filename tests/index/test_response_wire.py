"""Search responses built from cached metadata bytes (index_service/convert.py) equal the plain build.

The cache is keyed by the row's stored JSON; what must hold is that the bytes on the wire are
the same as building every Hit field by field, for every kind of metadata value, and that
the cache stays within its bound.
"""

from __future__ import annotations

import json

import pytest

from clipsearch.v1 import index_pb2
from index_service import convert
from index_service.config import Explanation, Hit, HitGroup

pytestmark = pytest.mark.unit

METADATA = [
    {},
    {"cat": "cat3"},
    {"price": 19.99, "stock": 0, "big": 2**53 + 1, "neg": -1.5e-300},
    {"sale": True, "new": False},
    {"tags": [], "sizes": ["S", "M", "XL"]},
    {"title": "Robe rouge 👗 — été", "ключ": "значение", "": "empty key"},
]


def stored(i: int, metadata: dict, group: str = "") -> Hit:
    text = json.dumps(metadata)
    return Hit(f"id-{i}", 0.5 - i / 100, json.loads(text), group, stored_metadata=text)


def plain(hit: Hit) -> index_pb2.Hit:
    return convert.hit_to_proto(Hit(hit.id, hit.score, hit.metadata, hit.group, hit.explanation))


def test_cached_hits_are_the_plain_hits_byte_for_byte():
    hits = [stored(i, m, group="g" if i % 2 else "") for i, m in enumerate(METADATA)]
    for _ in range(2):  # the second build reads the cache
        response = convert.search_response([hits, hits[::-1]], grouped=False)
        expected = index_pb2.SearchResponse(
            results=[
                index_pb2.QueryResult(hits=[plain(h) for h in hits]),
                index_pb2.QueryResult(hits=[plain(h) for h in hits[::-1]]),
            ]
        )
        assert response.SerializeToString(deterministic=True) == expected.SerializeToString(
            deterministic=True
        )


def test_explained_and_unstored_hits_take_the_plain_path():
    explained = Hit("e", 1.0, {"a": "b"}, "", Explanation(fused_score=0.7), stored_metadata='{"a": "b"}')
    built = Hit("b", 0.9, {"n": 3})
    response = convert.search_response([[explained, built]], grouped=False)
    assert response.results[0].hits[0].explanation.fused_score == pytest.approx(0.7)
    assert response.results[0].hits[1] == plain(built)


def test_grouped_responses_match_too():
    hits = [stored(i, m, group=f"g{i // 2}") for i, m in enumerate(METADATA)]
    groups = [HitGroup(f"g{n}", tuple(hits[2 * n : 2 * n + 2])) for n in range(3)]
    response = convert.search_response([groups], grouped=True)
    result = response.results[0]
    assert list(result.hits) == [plain(g.hits[0]) for g in groups]
    assert [list(g.hits) for g in result.groups] == [[plain(h) for h in g.hits] for g in groups]
    assert [g.group for g in result.groups] == ["g0", "g1", "g2"]


def test_the_cache_stays_within_its_bound(monkeypatch):
    monkeypatch.setattr(convert, "METADATA_WIRE_CACHE_BYTES", 2_000)
    monkeypatch.setattr(convert, "_metadata_wire", {})
    monkeypatch.setattr(convert, "_metadata_wire_bytes", 0)
    for i in range(500):
        hit = stored(i, {"title": f"item number {i}", "n": i})
        assert convert.search_response([[hit]], grouped=False).results[0].hits[0] == plain(hit)
        assert convert._metadata_wire_bytes <= 2_000
        assert sum(map(len, convert._metadata_wire.values())) == convert._metadata_wire_bytes


def test_a_row_too_big_for_the_cache_is_built_each_time(monkeypatch):
    monkeypatch.setattr(convert, "METADATA_WIRE_CACHE_BYTES", 64_000)
    monkeypatch.setattr(convert, "_metadata_wire", {})
    monkeypatch.setattr(convert, "_metadata_wire_bytes", 0)
    big = stored(0, {"description": "x" * 2_000})
    for _ in range(2):
        assert convert.search_response([[big]], grouped=False).results[0].hits[0] == plain(big)
    assert convert._metadata_wire == {} and convert._metadata_wire_bytes == 0
