"""The fast tokenizer gives open_clip's ids exactly, shortcut or not."""

from __future__ import annotations

import random
import string

import open_clip
import pytest
import torch

import encoder_service.model  # noqa: F401  (registers the clipsearch-* configs)
from encoder_service.tokens import FastTokenizer, _is_plain

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def original():
    return open_clip.get_tokenizer("clipsearch-tiny")


def random_texts(seed: int, count: int, alphabet: str) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) for _ in range(count)]


WORDY = string.ascii_letters + string.digits + "  '-.,!?/\"<>#;:()[]" + "&"
TRICKY = [
    "a red striped cotton dress",
    "  Blue   SNEAKERS, size 42!  ",
    "women's jeans -- 'slim' fit",
    "it's a <b>bold</b> shirt",
    "fish &amp; chips &lt;3",  # html entities: the original path
    "caf\u00e9 cr\u00e8me",  # non-ASCII
    "\u201ccurly quotes\u201d",
    "ﬁne ligature",
    "line\nbreak\tand tab",
    "Ã©mojibake",
    "\x1b[31mterminal red",
    "",
    " ",
    "word " * 100,  # truncated to the context, end token kept
    "x" * 300,
    "12345 67890 3.14",
]


def test_the_shortcut_is_taken_for_open_clips_simple_tokenizer(original) -> None:
    assert FastTokenizer(original).exact_shortcut


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_ascii_texts_get_the_same_ids(original, seed: int) -> None:
    texts = random_texts(seed, 700, WORDY)
    assert any(_is_plain(t) for t in texts) and any(not _is_plain(t) for t in texts)
    assert torch.equal(FastTokenizer(original)(texts), original(texts))


def test_tricky_texts_get_the_same_ids(original) -> None:
    fast = FastTokenizer(original)
    assert torch.equal(fast(TRICKY), original(TRICKY))
    assert torch.equal(fast(TRICKY), original(TRICKY))  # again, from the word cache
    assert fast(TRICKY).dtype == torch.long


def test_random_unicode_texts_get_the_same_ids(original) -> None:
    alphabet = string.ascii_letters + " &éèüßçñøå中文日本語😀\u00a0\u2014\u201c\u201d\u2019"
    texts = random_texts(3, 300, alphabet)
    assert torch.equal(FastTokenizer(original)(texts), original(texts))


def test_the_word_cache_is_bounded(original, monkeypatch: pytest.MonkeyPatch) -> None:
    from encoder_service import tokens

    monkeypatch.setattr(tokens, "WORD_CACHE_SIZE", 5)
    fast = FastTokenizer(original)
    texts = [f"word{i} other{i}" for i in range(20)]
    assert torch.equal(fast(texts), original(texts))
    assert len(fast._words) <= 5


def test_another_tokenizer_is_called_as_it_is() -> None:
    class Other:
        context_length = 4

        def __call__(self, texts):
            return torch.ones(len(texts), 4, dtype=torch.long)

    fast = FastTokenizer(Other())
    assert not fast.exact_shortcut
    assert torch.equal(fast(["a", "b"]), torch.ones(2, 4, dtype=torch.long))
