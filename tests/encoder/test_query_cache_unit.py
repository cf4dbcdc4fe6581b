"""The query-embedding cache on its own: hits, misses, the byte bound, fingerprints, keys."""

from __future__ import annotations

import numpy as np
import pytest

from encoder_service.query_cache import ENTRY_OVERHEAD_BYTES, QueryCache

pytestmark = pytest.mark.unit

FP_A, FP_B = "sha256:aa", "sha256:bb"


def vector(seed: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def entry_bytes(key: str, dim: int = 64) -> int:
    return dim * 4 + len(key) + ENTRY_OVERHEAD_BYTES


def test_a_stored_vector_is_a_hit_and_an_unknown_text_a_miss() -> None:
    cache = QueryCache(1 << 20)
    assert cache.get(FP_A, "red dress") is None
    cache.put(FP_A, "red dress", vector(1))
    got = cache.get(FP_A, "red dress")
    assert got is not None
    np.testing.assert_array_equal(got, vector(1))
    assert not got.flags.writeable  # callers share it: nobody may change it
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    assert stats.hit_ratio == 0.5


def test_the_stored_vector_is_a_copy() -> None:
    cache = QueryCache(1 << 20)
    original = vector(1)
    cache.put(FP_A, "red dress", original)
    original[:] = 0
    np.testing.assert_array_equal(cache.get(FP_A, "red dress"), vector(1))


def test_another_fingerprint_never_sees_the_vector() -> None:
    cache = QueryCache(1 << 20)
    cache.put(FP_A, "red dress", vector(1))
    assert cache.get(FP_B, "red dress") is None
    cache.put(FP_B, "red dress", vector(2))
    np.testing.assert_array_equal(cache.get(FP_A, "red dress"), vector(1))
    np.testing.assert_array_equal(cache.get(FP_B, "red dress"), vector(2))


def test_memory_stays_within_the_bound_least_recently_used_out_first() -> None:
    keys = [f"query {i:03d}" for i in range(10)]
    cache = QueryCache(3 * entry_bytes(keys[0]))
    for i, key in enumerate(keys[:3]):
        cache.put(FP_A, key, vector(i))
    assert cache.get(FP_A, keys[0]) is not None  # keys[0] is now the most recently used
    cache.put(FP_A, keys[3], vector(3))
    assert cache.get(FP_A, keys[1]) is None  # the least recently used went
    assert cache.get(FP_A, keys[0]) is not None
    for i, key in enumerate(keys):
        cache.put(FP_A, key, vector(i))
        stats = cache.stats()
        assert stats.bytes <= stats.max_bytes
    assert cache.stats().entries == 3


def test_storing_a_text_again_replaces_it_without_growing() -> None:
    cache = QueryCache(1 << 20)
    cache.put(FP_A, "red dress", vector(1))
    size = cache.stats().bytes
    cache.put(FP_A, "red dress", vector(2))
    assert cache.stats().bytes == size and cache.stats().entries == 1
    np.testing.assert_array_equal(cache.get(FP_A, "red dress"), vector(2))


def test_a_vector_larger_than_the_cache_is_not_kept() -> None:
    cache = QueryCache(100)
    cache.put(FP_A, "red dress", vector(1))
    assert cache.stats().entries == 0 and cache.get(FP_A, "red dress") is None


def test_a_cache_of_no_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        QueryCache(0)


def test_keys_fold_case_and_spaces_only_where_the_tokenizer_does() -> None:
    from encoder_service.model import load_model

    tokenizer = load_model("clipsearch-tiny", "random").tokenizer
    assert tokenizer.exact_shortcut
    same = ["Red  Dress", "red dress", " RED dress "]
    assert {tokenizer.cache_key(t) for t in same} == {"red dress"}
    ids = tokenizer(same)
    assert all((row == ids[0]).all() for row in ids)
    # ftfy / html.unescape run first on these: each is its own key.
    for text in ("Red &amp; Dress", "Red Dréss", "red\tdress"):
        assert tokenizer.cache_key(text) == text
