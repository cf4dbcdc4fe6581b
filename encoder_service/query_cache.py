"""The query-embedding cache: text vectors already computed, reused for repeated queries.

Shoppers repeat the head queries all day ("red dress" many times an hour), and a text the
model has embedded once embeds to the same vector again. The cache maps (model fingerprint,
normalised text) to that vector, least recently used out first, bounded in bytes
(``--query-cache-mib``; 0 turns it off). Only interactive ``Embed`` texts go through it:
``EmbedStream`` (bulk ingest) texts are rarely repeated and would only push queries out.

Normalising must never make two texts share an entry unless the model gets the same token
ids for both: :meth:`encoder_service.tokens.FastTokenizer.cache_key` folds case and runs of
spaces only where the tokenizer provably does the same (printable ASCII through open_clip's
lower-casing tokenizer), and keys every other text by its exact characters.

Plain Python, no gRPC and no torch: the core calls it on its event loop, the lock only
guards against a Ray replica or a test calling from another thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

#: Bytes counted per entry on top of the vector and the key's characters: the dict slot,
#: the key tuple, the str and ndarray headers (measured with sys.getsizeof: ~330).
ENTRY_OVERHEAD_BYTES = 400


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class QueryCache:
    """An LRU of read-only float32 vectors keyed by (fingerprint, key), at most ``max_bytes``."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive (a cache of 0 bytes is no cache: pass None)")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, fingerprint: str, key: str) -> np.ndarray | None:
        """The cached vector (read-only: copy it before changing it), or None (counted as a miss)."""
        with self._lock:
            vector = self._entries.get((fingerprint, key))
            if vector is None:
                self._misses += 1
                return None
            self._entries.move_to_end((fingerprint, key))
            self._hits += 1
            return vector

    def put(self, fingerprint: str, key: str, vector: np.ndarray) -> None:
        """Keeps a read-only copy of ``vector``; older entries go until it fits (a vector larger
        than the whole cache is not kept)."""
        size = _entry_bytes(key, vector)
        if size > self.max_bytes:
            return
        stored = np.array(vector, dtype=np.float32, copy=True)
        stored.setflags(write=False)
        with self._lock:
            old = self._entries.pop((fingerprint, key), None)
            if old is not None:
                self._bytes -= _entry_bytes(key, old)
            while self._entries and self._bytes + size > self.max_bytes:
                (_, evicted_key), evicted = self._entries.popitem(last=False)
                self._bytes -= _entry_bytes(evicted_key, evicted)
            self._entries[(fingerprint, key)] = stored
            self._bytes += size

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self._bytes, self.max_bytes)


def _entry_bytes(key: str, vector: np.ndarray) -> int:
    return vector.size * 4 + len(key) + ENTRY_OVERHEAD_BYTES
