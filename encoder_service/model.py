"""The open_clip model behind the service: loading, identity, and batched inference.

Every model is created by ``open_clip.create_model_and_transforms(name, pretrained=...)``
with the configs of ``encoder_service/model_configs`` registered at import. Inference runs
under ``torch.inference_mode``; on CUDA, inputs go through pinned memory (or arrive there
already, decoded on the device) and fp16/bf16 run as autocast (weights stay fp32, vectors are
normalized in fp32). Texts are tokenized by :class:`~encoder_service.tokens.FastTokenizer`
(open_clip's ids, less Python) and, for CLIP's causal text tower, run only up to the longest
text's end token (:meth:`EncoderModel.encode_texts`). No gRPC here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image
from torch.nn import functional as F

from clipsearch.types import ModelInfo
from encoder_service.fingerprint import model_fingerprint
from encoder_service.tokens import FastTokenizer
from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL, RANDOM_WEIGHTS

log = logging.getLogger(__name__)

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIGS)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
#: Random weights are drawn from this seed, so "random" is the same model in every process.
RANDOM_SEED = 0
#: fp16/bf16 must give fp32's vectors to at least this cosine on the start-up probe, or the
#: model does not start (a model that overflows in fp16 would otherwise serve wrong vectors).
PRECISION_MIN_COSINE = 0.999


class ModelLoadError(RuntimeError):
    """The model cannot be loaded as asked; the message names the flag at fault."""


class EncoderModel:
    """An open_clip model ready for batched, normalized inference on one device."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess,
        tokenizer,
        *,
        identity: ModelInfo,
        device: torch.device,
        precision: str,
    ):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer if isinstance(tokenizer, FastTokenizer) else FastTokenizer(tokenizer)
        self.identity = identity
        self.device = device
        self.precision = precision
        #: Whether texts run only up to the batch's longest end token (see encode_texts).
        self.text_prefix = _prefix_check(self)

    # -- work done off the model thread ---------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, context_length) token ids; longer texts are truncated (end token kept)."""
        return self.tokenizer(list(texts))

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """(3, H, W) float32: the model's own evaluation transform."""
        return self.preprocess(image)

    # -- work done on the model thread ----------------------------------------------------

    def encode_texts(self, tokens: Sequence[torch.Tensor]) -> np.ndarray:
        """Rows of token ids (each (context_length,)) -> (n, dim) L2-normalized float32.

        CLIP's text tower is causal and reads its output at the end token (the highest id,
        found by argmax), so positions after the batch's last end token change nothing: when
        :attr:`text_prefix` is on (checked against the full context at load), only the prefix
        up to it runs, 16 of 77 positions for a typical product query.
        """
        if self.text_prefix:
            length = max(int(row.argmax()) for row in tokens) + 1
            if length < tokens[0].shape[-1]:
                return self._encode(self._encode_text_prefix, [row[:length] for row in tokens])
        return self._encode(self.model.encode_text, tokens)

    def encode_images(self, pixels: Sequence[torch.Tensor]) -> np.ndarray:
        """Preprocessed images (each (3, H, W), on the CPU or already on the device) -> (n, dim)
        L2-normalized float32."""
        return self._encode(self.model.encode_image, pixels)

    def _encode(self, forward, rows: Sequence[torch.Tensor]) -> np.ndarray:
        batch = self._collate(rows)
        with torch.inference_mode(), self._autocast():
            if self.device.type == "cuda":
                batch = batch.to(self.device, non_blocking=True)
            features = forward(batch)
            vectors = F.normalize(features.float(), dim=-1)
        return vectors.cpu().numpy()

    def _encode_text_prefix(self, text: torch.Tensor) -> torch.Tensor:
        """open_clip's ``CLIP.encode_text`` on the first ``text.shape[1]`` positions only."""
        model: Any = self.model  # open_clip.CLIP (checked by _prefix_check)
        length = text.shape[1]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(text).to(cast_dtype)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length].contiguous())
        x = model.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]  # argmax pooling
        projection = model.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection

    def _collate(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        rows = list(rows)
        first = rows[0]
        if self.device.type != "cuda":
            return torch.stack(rows)
        on_device = sum(row.is_cuda for row in rows)
        if on_device == len(rows):  # decoded on the device (encoder_service.device_images)
            return torch.stack(rows)
        if on_device:  # a few fell back to the CPU decoder: bring them over
            return torch.stack([row if row.is_cuda else row.to(self.device) for row in rows])
        # Stack straight into page-locked memory so the host->device copy can be async.
        out = torch.empty((len(rows), *first.shape), dtype=first.dtype, pin_memory=True)
        return torch.stack(rows, out=out)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    def precision_cosine(self) -> float:
        """Lowest cosine between this precision's vectors and fp32's on probe images and texts."""
        rng = np.random.default_rng(RANDOM_SEED)
        noise = Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8))
        pixels = [
            self.preprocess_image(image) for image in (noise, Image.new("RGB", (64, 48), (200, 30, 30)))
        ]
        tokens = list(self.tokenize(list(_PREFIX_CHECK_TEXTS)))
        low = np.concatenate([self.encode_images(pixels), self.encode_texts(tokens)])
        precision, self.precision = self.precision, "fp32"
        try:
            full = np.concatenate([self.encode_images(pixels), self.encode_texts(tokens)])
        finally:
            self.precision = precision
        return float(np.min(np.sum(low * full, axis=1)))

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Runs both towers at each batch size so the first real call is not the slow one."""
        image = Image.new("RGB", (2 * self.identity.image_size,) * 2, (127, 127, 127))
        pixels = self.preprocess_image(image)
        tokens = self.tokenize(["a warm-up sentence"])[0]
        for size in sorted(set(batch_sizes)):
            for vectors in (self.encode_images([pixels] * size), self.encode_texts([tokens] * size)):
                if vectors.shape != (size, self.identity.embedding_dim):
                    raise ModelLoadError(
                        f"warm-up gave vectors of shape {vectors.shape}, "
                        f"expected ({size}, {self.identity.embedding_dim})"
                    )


#: Texts of different lengths the prefix check runs (the longest is cut by the context).
_PREFIX_CHECK_TEXTS = ("a", "a red striped cotton dress with two pockets", "blue " * 100)


def _prefix_check(encoder: EncoderModel) -> bool:
    """Whether :meth:`EncoderModel._encode_text_prefix` gives ``encode_text``'s vectors here.

    Only CLIP's own text tower (argmax pooling, a causal mask) qualifies, and then only if the
    prefix and the full context agree on texts of several lengths (fp32, to 1e-4): an open_clip
    version whose internals moved simply runs the full context.
    """
    model = encoder.model
    if not (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "text_pool_type", None) == "argmax"
        and getattr(model, "attn_mask", None) is not None
    ):
        return False
    try:
        tokens = encoder.tokenize(list(_PREFIX_CHECK_TEXTS)).to(encoder.device)
        with torch.inference_mode():
            full = F.normalize(model.encode_text(tokens).float(), dim=-1)
            for row, text in enumerate(tokens):
                length = int(text.argmax()) + 1
                prefix = F.normalize(encoder._encode_text_prefix(text[None, :length]).float(), dim=-1)
                if float((prefix[0] - full[row]).abs().max()) > 1e-4:
                    log.warning("text prefix differs from the full context; running all positions")
                    return False
    except Exception as exc:
        log.warning("text prefix unavailable (%s); running all positions", exc)
        return False
    return True


def resolve_device(spec: str) -> torch.device:
    """``auto`` is CUDA when present; ``cuda``/``cuda:N`` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"--device {spec}: CUDA is not available on this machine")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ModelLoadError("--precision fp16: needs a CUDA device (use bf16 or fp32 on CPU)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelLoadError(f"--precision bf16: not supported by {torch.cuda.get_device_name(device)}")


def load_model(name: str, pretrained: str, *, device: str = "cpu", precision: str = "fp32") -> EncoderModel:
    """Loads ``name`` with ``pretrained`` (tag, checkpoint path or ``random``); see module doc."""
    torch_device = resolve_device(device)
    check_precision(precision, torch_device)
    if name not in open_clip.list_models():
        raise ModelLoadError(f"--model {name}: not an open_clip model config (see open_clip.list_models())")
    model_config = open_clip.get_model_config(name)
    if pretrained == RANDOM_WEIGHTS:
        log.warning("--pretrained random: %s has RANDOM weights; its vectors mean nothing", name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model, _, preprocess = _create(name, None)
        label = RANDOM_WEIGHTS
    else:
        _check_checkpoint_path(name, pretrained)
        model, _, preprocess = _create(name, pretrained)
        label = Path(pretrained).name if Path(pretrained).is_file() else pretrained
    tokenizer = open_clip.get_tokenizer(name)
    preprocess_cfg = dict(model.visual.preprocess_cfg)
    fingerprint = model_fingerprint(
        name,
        model_config=model_config,
        state_dict=model.state_dict(),
        preprocess_cfg=preprocess_cfg,
        tokenizer=f"{type(tokenizer).__name__}(context_length={tokenizer.context_length})",
    )
    model = model.to(torch_device)
    size = model.visual.image_size
    identity = ModelInfo(
        name=name,
        pretrained=label,
        fingerprint=fingerprint,
        embedding_dim=int(model_config["embed_dim"]),
        image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        context_length=int(tokenizer.context_length),
        device=str(torch_device),
        dtype=str(_DTYPES[precision]).removeprefix("torch."),
    )
    log.info(
        "loaded %s (%s) on %s, %s, fingerprint %s", name, label, torch_device, identity.dtype, fingerprint
    )
    encoder = EncoderModel(
        model, preprocess, tokenizer, identity=identity, device=torch_device, precision=precision
    )
    if precision != "fp32":
        cosine = encoder.precision_cosine()
        log.info(
            "--precision %s: vectors within cosine %.6f of fp32 on the start-up probe", precision, cosine
        )
        if not cosine >= PRECISION_MIN_COSINE:
            raise ModelLoadError(
                f"--precision {precision}: {name}'s vectors are only within cosine {cosine:.4f} of "
                f"fp32's (at least {PRECISION_MIN_COSINE} is required); use --precision fp32, or the "
                "other of fp16/bf16"
            )
    return encoder


def _check_checkpoint_path(name: str, pretrained: str) -> None:
    path = Path(pretrained)
    looks_like_path = path.suffix in _CHECKPOINT_SUFFIXES or "/" in pretrained or "\\" in pretrained
    if not looks_like_path or path.is_file():
        return
    if name == DEMO_MODEL and path == DEMO_CHECKPOINT:
        raise ModelLoadError(
            f"--pretrained: the {DEMO_MODEL} checkpoint {path} is missing. Train it with "
            f"`python -m clipsearch.apps.demo.training.train_demo --out {path}`, or pass --pretrained "
            f"(a checkpoint file, an open_clip tag, or '{RANDOM_WEIGHTS}')"
        )
    raise ModelLoadError(f"--pretrained {pretrained}: no such checkpoint file")


def _create(name: str, pretrained: str | None):
    try:
        return open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except Exception as exc:
        raise ModelLoadError(f"--pretrained {pretrained}: cannot load {name} ({exc})") from exc
