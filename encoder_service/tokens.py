"""Tokenization with open_clip's own tokenizer, less Python per text, the same ids.

open_clip's ``SimpleTokenizer`` spends most of its ~50 µs per short text in ``ftfy.fix_text``
and ``html.unescape`` (no-ops on plain ASCII text), in joining byte-encoded words and in
building one tensor per row. At tens of thousands of texts a second, that is the GIL of the
whole server. :class:`FastTokenizer` takes a shortcut only where it provably gives the same
ids: a text of printable ASCII without ``&`` (``ftfy`` and ``html.unescape`` leave such text
as it is; tests/encoder/test_tokens.py checks random texts against the original), and the ids
of each word are cached. Every other text, and every other tokenizer class, goes through the
original unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: Distinct words whose ids are kept; the cache is emptied when it is full (bounded memory).
WORD_CACHE_SIZE = 200_000


def _is_plain(text: str) -> bool:
    """Printable ASCII without '&': ftfy.fix_text and html.unescape return it unchanged."""
    return text.isascii() and text.isprintable() and "&" not in text


class FastTokenizer:
    """Callable like the open_clip tokenizer it wraps: texts -> (n, context_length) int64 ids."""

    def __init__(self, tokenizer: Any):
        self.inner = tokenizer
        self.context_length = int(tokenizer.context_length)
        self.exact_shortcut = _supports_shortcut(tokenizer)
        self._words: dict[str, tuple[int, ...]] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if not self.exact_shortcut:
            return self.inner(list(texts))
        inner = self.inner
        sot, eot, context = inner.sot_token_id, inner.eot_token_id, self.context_length
        out = np.zeros((len(texts), context), np.int64)
        for row, text in enumerate(texts):
            if _is_plain(text):
                ids = [sot]
                for word in inner.pat.findall(" ".join(text.split()).lower()):
                    ids.extend(self._word_ids(word))
            else:
                ids = [sot, *inner.encode(text)]
            ids.append(eot)
            if len(ids) > context:
                ids = ids[:context]
                ids[-1] = eot
            out[row, : len(ids)] = ids
        return torch.from_numpy(out)

    def cache_key(self, text: str) -> str:
        """A key equal for two texts only if they get the same ids: plain texts through the
        shortcut fold case and runs of spaces (what the shortcut does first), every other text is
        its own key (ftfy and html.unescape run before the tokenizer's own folding)."""
        if self.exact_shortcut and _is_plain(text):
            return " ".join(text.split()).lower()
        return text

    def _word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._words.get(word)
        if ids is None:
            inner = self.inner
            encoded = "".join(inner.byte_encoder[b] for b in word.encode("utf-8"))
            ids = tuple(inner.encoder[piece] for piece in inner.bpe(encoded).split(" "))
            if len(self._words) >= WORD_CACHE_SIZE:
                self._words.clear()
            self._words[word] = ids
        return ids


def _supports_shortcut(tokenizer: Any) -> bool:
    """open_clip's SimpleTokenizer with the default 'lower' cleaning and no reduction."""
    try:
        from open_clip import tokenizer as module
    except ImportError:  # pragma: no cover - open_clip is what made the tokenizer
        return False
    return (
        type(tokenizer) is module.SimpleTokenizer
        and getattr(tokenizer, "clean_fn", None) is module._clean_lower
        and getattr(tokenizer, "reduction_fn", None) is None
        and hasattr(tokenizer, "pat")
    )
