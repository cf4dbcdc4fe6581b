"""Which searches run on the event loop's own thread instead of a worker thread.

A search of a fast index (HNSW, IVF) takes ~0.1-0.5 ms of work; handing it to a worker and
back costs the server's one event-loop thread about as much again (a queue put, a worker
wake-up, ``call_soon_threadsafe`` and the self-pipe), and that thread is what caps a Python
gRPC server's calls per second. So a search that is expected to be cheap runs inline.

It is only safe while it cannot wait: a search that would block on a shard's lock (a write
in progress) raises :class:`~index_service.rwlock.WouldBlock` on the loop's thread and runs
on a worker after all. What "cheap" means is measured, per collection and per kind of
search (filtered or not), as the recent CPU time of its work per query; a slow search raises
the estimate fast, a cheap one lowers it slowly. Keys are the names requests use (an
alias's estimate follows whatever it points at, one search later).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: At most this many queries in a request run inline (the estimate is per query)...
MAX_INLINE_QUERIES = 4
#: ...and only requests of a size like the ones the estimate learns from: k + offset, and
#: the efSearch / nprobe asked for (0: the index's own), at most these. A k of 10,000 with
#: efSearch 10,000 took 118 ms where k=10 took 0.6 ms on the same HNSW collection.
MAX_INLINE_WIDTH = 100
MAX_INLINE_EF_SEARCH = 256
MAX_INLINE_NPROBE = 64
#: Weight of a new sample above the estimate (two slow searches in a row take it 3/4 of the way).
RISE = 0.5
#: Weight of a new sample below it.
DECAY = 0.1
#: After a run that would have waited, the estimate is this many budgets (it decays from there).
BLOCKED_PENALTY = 10.0


@dataclass
class InlinePolicy:
    """Per-query cost estimates, and the budget a search must fit to run inline."""

    #: Work a search may take on the event loop's thread, in seconds (0: never inline).
    budget_s: float
    _per_query_s: dict[tuple[str, bool], float] = field(default_factory=dict)
    #: Kinds whose searches would wait every time (several shards, re-ranking from the store).
    _never: set[tuple[str, bool]] = field(default_factory=set)

    def should_inline(self, key: tuple[str, bool], queries: int) -> bool:
        """Whether a search of ``queries`` queries of this kind is expected to fit the budget.

        Unknown kinds run on a worker first (that run is measured)."""
        if self.budget_s <= 0 or not 1 <= queries <= MAX_INLINE_QUERIES or key in self._never:
            return False
        estimate = self._per_query_s.get(key)
        return estimate is not None and estimate * queries <= self.budget_s

    def record(self, key: tuple[str, bool], queries: int, seconds: float) -> None:
        """Learns from one search's work time (wherever it ran)."""
        if queries < 1:
            return
        sample = seconds / queries
        estimate = self._per_query_s.get(key)
        if estimate is None:
            self._per_query_s[key] = sample
        else:
            self._per_query_s[key] = estimate + (RISE if sample > estimate else DECAY) * (sample - estimate)

    def record_blocked(self, key: tuple[str, bool], *, structural: bool) -> None:
        """An inline run met something it would have waited for. A write holding a shard, or a
        filter whose plan reads the store: the next ~25 searches of this kind run on workers,
        then it tries again. Several shards or a re-ranking index (``structural``): never again
        (until the server restarts; an estimate is kept per collection name)."""
        if structural:
            self._never.add(key)
        self._per_query_s[key] = max(self._per_query_s.get(key, 0.0), BLOCKED_PENALTY * self.budget_s)
