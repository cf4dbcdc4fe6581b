"""Model loading, identity and fingerprint, against in-process open_clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from encoder_media import image_bytes

from encoder_service import fingerprint as fingerprint_module
from encoder_service import model as model_module
from encoder_service.images import ImageLimits, decode_image
from encoder_service.model import ModelLoadError, load_model
from encoder_service.weights import DEMO_MODEL

pytestmark = pytest.mark.unit


def test_model_configs_are_registered_at_import() -> None:
    assert "clipsearch-tiny" in open_clip.list_models()
    config = open_clip.get_model_config("clipsearch-tiny")
    assert config["text_cfg"]["vocab_size"] == 49408 and config["text_cfg"]["context_length"] == 77


def test_identity_of_the_tiny_model(reference_model) -> None:
    identity = reference_model.identity
    assert (identity.name, identity.pretrained) == ("clipsearch-tiny", "random")
    assert (identity.embedding_dim, identity.image_size, identity.context_length) == (64, 32, 77)
    assert (identity.device, identity.dtype) == ("cpu", "float32")
    assert identity.fingerprint.startswith("sha256:") and len(identity.fingerprint) == 7 + 64


def test_a_checkpoint_file_loads_through_open_clip_and_matches_it(checkpoints: tuple[Path, Path]) -> None:
    path = checkpoints[0]
    served = load_model("clipsearch-tiny", str(path))
    assert served.identity.pretrained == "tiny-a.pt"
    reference, _, preprocess = open_clip.create_model_and_transforms("clipsearch-tiny", pretrained=str(path))
    reference.eval()
    tokenizer = open_clip.get_tokenizer("clipsearch-tiny")
    texts = ["a red dress", "blue sneakers with white soles"]
    image = decode_image(image_bytes("PNG", size=(50, 40)), ImageLimits())
    with torch.no_grad():
        expected_text = reference.encode_text(tokenizer(texts), normalize=True).numpy()
        expected_image = reference.encode_image(preprocess(image).unsqueeze(0), normalize=True).numpy()
    got_text = served.encode_texts(list(served.tokenize(texts)))
    got_image = served.encode_images([served.preprocess_image(image)])
    np.testing.assert_allclose(got_text, expected_text, atol=1e-5)
    np.testing.assert_allclose(got_image, expected_image, atol=1e-5)
    assert got_text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got_text, axis=1), 1.0, atol=1e-5)


def test_fingerprint_is_stable_for_one_checkpoint_and_differs_between_two(
    checkpoints: tuple[Path, Path],
) -> None:
    a, b = checkpoints
    first = load_model("clipsearch-tiny", str(a)).identity.fingerprint
    again = load_model("clipsearch-tiny", str(a)).identity.fingerprint
    other = load_model("clipsearch-tiny", str(b)).identity.fingerprint
    assert first == again
    assert first != other


def test_fingerprint_covers_preprocessing(
    monkeypatch: pytest.MonkeyPatch, checkpoints: tuple[Path, Path]
) -> None:
    plain = load_model("clipsearch-tiny", str(checkpoints[0])).identity.fingerprint
    monkeypatch.setattr(fingerprint_module, "DECODE_POLICY", "another decode policy")
    assert load_model("clipsearch-tiny", str(checkpoints[0])).identity.fingerprint != plain


def test_random_weights_are_the_same_in_every_load(reference_model) -> None:
    again = load_model("clipsearch-tiny", "random")
    assert again.identity.fingerprint == reference_model.identity.fingerprint
    before = torch.random.get_rng_state()
    load_model("clipsearch-tiny", "random")
    assert torch.equal(before, torch.random.get_rng_state()), "loading must not disturb the global RNG"


def test_text_longer_than_the_context_is_truncated_deterministically(reference_model) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    tokens = reference_model.tokenize([words + " red", words + " blue", words + " red"])
    assert tokens.shape == (3, 77)
    vectors = reference_model.encode_texts(list(tokens))
    np.testing.assert_array_equal(vectors[0], vectors[1])  # the tails fell beyond the context
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_a_missing_checkpoint_is_an_error_never_random_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such checkpoint file"):
        load_model("clipsearch-tiny", str(tmp_path / "nope.pt"))


def test_the_missing_demo_checkpoint_says_how_to_make_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "clipsearch-demo.pt"
    monkeypatch.setattr(model_module, "DEMO_CHECKPOINT", missing)
    with pytest.raises(ModelLoadError, match="train_demo"):
        load_model(DEMO_MODEL, str(missing))


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save({"visual.proj": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    with pytest.raises(ModelLoadError, match="cannot load clipsearch-tiny"):
        load_model("clipsearch-tiny", str(tmp_path / "wrong.pt"))


def test_unknown_model_and_unknown_tag_are_clear_errors() -> None:
    with pytest.raises(ModelLoadError, match="--model no-such-model"):
        load_model("no-such-model", "random")
    with pytest.raises(ModelLoadError, match="--pretrained not-a-tag"):
        load_model("clipsearch-tiny", "not-a-tag")


def test_fp16_needs_cuda_and_cuda_must_exist() -> None:
    with pytest.raises(ModelLoadError, match="--precision fp16"):
        load_model("clipsearch-tiny", "random", device="cpu", precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="--device cuda"):
            load_model("clipsearch-tiny", "random", device="cuda")


def test_bf16_autocast_on_cpu_stays_close_to_fp32(reference_model) -> None:
    bf16 = load_model("clipsearch-tiny", "random", device="cpu", precision="bf16")
    assert bf16.identity.dtype == "bfloat16"
    assert bf16.identity.fingerprint == reference_model.identity.fingerprint  # same weights
    tokens = list(reference_model.tokenize(["a striped scarf", "a dotted hat"]))
    low = bf16.encode_texts(tokens)
    assert low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(low * reference_model.encode_texts(tokens), axis=1)
    assert np.all(cosine > 0.98)


def test_reduced_precision_is_checked_against_fp32_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    bf16 = load_model("clipsearch-tiny", "random", device="cpu", precision="bf16")
    assert bf16.precision_cosine() >= model_module.PRECISION_MIN_COSINE
    assert bf16.precision == "bf16", "the check leaves the precision as it was"
    monkeypatch.setattr(model_module, "PRECISION_MIN_COSINE", 1.01)  # no model can pass this
    with pytest.raises(ModelLoadError, match=r"--precision bf16: clipsearch-tiny's vectors are only within"):
        load_model("clipsearch-tiny", "random", device="cpu", precision="bf16")
    assert load_model("clipsearch-tiny", "random", precision="fp32").precision == "fp32"  # fp32: no check
