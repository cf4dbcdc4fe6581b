"""The model fingerprint: which vectors are comparable with which.

A SHA-256 over the model name, its architecture config, every weight tensor (name,
dtype, shape and bytes, in name order), the image preprocessing config, the tokenizer,
and this service's own decode policy. Two servers with equal fingerprints produce the
same vectors for the same input (up to the device's arithmetic); the index refuses
vectors whose fingerprint differs from its collection's.

**Why the decode rules of images.py (v2) left the fingerprint as it was.** Since v2, images
with transparency, 16-bit samples or a non-sRGB ICC profile reach the model as a person sees
them (composited onto the background, scaled, converted to sRGB); every other file, which is
most of a catalog and every plain 8-bit RGB JPEG, PNG or WebP, decodes to exactly the same
pixels as in v1. Changing :data:`DECODE_POLICY` would change every fingerprint, and every
existing collection would then refuse every query until it was re-ingested: an outage for
all, including catalogs in which not one vector changes. The affected vectors were the wrong
ones (a cut-out flattened onto black, a 16-bit image turned white), so mixing them with v2
vectors is no worse than keeping them. Instead :data:`PREPROCESSING_VERSION` names the decode
rules separately, and :func:`preprocessing_policy` adds the configured background: an ingest
that puts it in its resume key re-embeds every row once, in place, while the collection keeps
serving. The background is not in the fingerprint either: every encoder behind one collection
should run the same ``--image-background``, which the preprocessing string shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

#: Part of the fingerprint. Bump when this service changes how it turns plain RGB bytes into
#: model input (what would make vectors of ordinary files incomparable); see the module doc.
DECODE_POLICY = "v1: Pillow decode, EXIF transpose, convert RGB, open_clip eval transform"

#: Not part of the fingerprint: bump when decoding changes the pixels of some files only
#: (alpha, 16-bit, ICC profiles, modes), so that ingests re-embed them (see the module doc).
PREPROCESSING_VERSION = (
    "images-v3: modes by value, 16-bit scaled, ICC to sRGB, alpha over background, "
    "JPEGs over the pixel limit decoded at a reduced size"
)


def preprocessing_policy(background: tuple[int, int, int], max_pixels: int | None = None) -> str:
    """:data:`PREPROCESSING_VERSION` with the configured background (and the pixel limit over which
    JPEGs are decoded reduced), e.g. ``...; background #ffffff; reduced over 4194304 pixels``."""
    text = f"{PREPROCESSING_VERSION}; background #{background[0]:02x}{background[1]:02x}{background[2]:02x}"
    return text if max_pixels is None else f"{text}; reduced over {max_pixels} pixels"


def model_fingerprint(
    name: str,
    *,
    model_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    preprocess_cfg: Mapping[str, Any],
    tokenizer: str,
) -> str:
    digest = hashlib.sha256()
    header = {
        "name": name,
        "model_config": model_config,
        "preprocess": preprocess_cfg,
        "tokenizer": tokenizer,
        "decode": DECODE_POLICY,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"\n{key}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        # Through uint8 so every dtype (bf16 included) hashes by its exact bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()
