"""Texts run only up to the batch's last end token, with the full context's vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoder_service import model as model_module
from encoder_service.model import load_model
from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL

pytestmark = pytest.mark.unit

SHORT = ["a red dress", "blue sneakers with white soles", "a plain black handbag with a gold chain"]


@pytest.fixture(scope="module", params=["tiny", "demo"])
def encoder(request):
    if request.param == "tiny":
        return load_model("clipsearch-tiny", "random")
    return load_model(DEMO_MODEL, str(DEMO_CHECKPOINT))


def full_context(encoder, texts: list[str]) -> np.ndarray:
    saved = encoder.text_prefix
    encoder.text_prefix = False
    try:
        return encoder.encode_texts(list(encoder.tokenize(texts)))
    finally:
        encoder.text_prefix = saved


def test_the_prefix_is_on_for_clip_text_towers(encoder) -> None:
    assert encoder.text_prefix


def test_short_texts_give_the_full_contexts_vectors(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    lengths: list[int] = []
    prefix = encoder._encode_text_prefix
    monkeypatch.setattr(encoder, "_encode_text_prefix", lambda t: lengths.append(t.shape[1]) or prefix(t))
    got = encoder.encode_texts(list(encoder.tokenize(SHORT)))
    want = full_context(encoder, SHORT)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert lengths and lengths[0] < 20, "the batch ran its prefix only"


def test_a_batch_of_one_and_mixed_lengths_agree_with_each_text_alone(encoder) -> None:
    together = encoder.encode_texts(list(encoder.tokenize(SHORT)))
    for row, text in enumerate(SHORT):
        alone = encoder.encode_texts(list(encoder.tokenize([text])))
        np.testing.assert_allclose(alone[0], together[row], atol=2e-6)


def test_a_text_filling_the_context_runs_the_whole_context(encoder) -> None:
    texts = ["word " * 200, "a red dress"]
    np.testing.assert_allclose(
        encoder.encode_texts(list(encoder.tokenize(texts))), full_context(encoder, texts), atol=2e-6
    )


def test_a_prefix_that_disagrees_turns_itself_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(self, text: torch.Tensor) -> torch.Tensor:
        return torch.ones(text.shape[0], self.identity.embedding_dim)

    monkeypatch.setattr(model_module.EncoderModel, "_encode_text_prefix", wrong)
    assert not load_model("clipsearch-tiny", "random").text_prefix


def test_a_prefix_that_fails_turns_itself_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, text: torch.Tensor) -> torch.Tensor:
        raise AttributeError("positional_embedding moved")

    monkeypatch.setattr(model_module.EncoderModel, "_encode_text_prefix", broken)
    encoder = load_model("clipsearch-tiny", "random")
    assert not encoder.text_prefix
    assert encoder.encode_texts(list(encoder.tokenize(SHORT))).shape == (3, 64)
