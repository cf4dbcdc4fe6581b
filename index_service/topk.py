"""The one top-k rule, wherever results meet: score descending, then id ascending.

A shard picks its best candidates with it, a collection merges its shards' with it, and the
cluster merges its shard groups' with it, so the same query gives the same hits in the same
order standalone, sharded and distributed. Ties go to the lower id (byte order of the
string): the one order every layer knows, stable across restarts, re-ingests and replicas.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def best(
    candidates: Iterable[T], k: int, *, score: Callable[[T], float], id: Callable[[T], str], offset: int = 0
) -> list[T]:
    """The ``k`` best candidates after skipping the ``offset`` best ones."""
    return heapq.nsmallest(offset + k, candidates, key=lambda c: (-score(c), id(c)))[offset:]
