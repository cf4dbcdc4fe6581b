"""The model fingerprint: which vectors are comparable with which.

A SHA-256 over the model name, its architecture config, every weight tensor (name,
dtype, shape and bytes, in name order), the image preprocessing config, the tokenizer,
and this service's own decode policy. Two servers with equal fingerprints produce the
same vectors for the same input (up to the device's arithmetic); the index refuses
vectors whose fingerprint differs from its collection's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

#: Bump when this service changes how it turns bytes into model input.
DECODE_POLICY = "v1: Pillow decode, EXIF transpose, convert RGB, open_clip eval transform"


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
