"""open_clip loaded the way our encoder loads it, for the peers that are not our encoder.

Imports torch, open_clip, numpy and pillow only (no clipsearch), so the PyTriton venv, the
naive grpcio server and the in-process ceiling run the very same model code. Weights: the
shipped checkpoint path, or ``random`` (seed 0, as ``encoder_service.model`` draws them).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

#: This checkout's configs; the harness passes the ones of the encoder_service it imports.
MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "encoder_service" / "model_configs"


class ClipModel:
    def __init__(self, name: str, pretrained: str, threads: int, configs: Path | str = MODEL_CONFIGS):
        open_clip.add_model_config(configs)
        if threads:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                name, pretrained=None if pretrained == "random" else pretrained
            )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(list(texts)), normalize=True).float().numpy()

    def encode_images(self, images: Sequence[bytes]) -> np.ndarray:
        pixels = torch.stack([self.preprocess(decode(data)) for data in images])
        with torch.inference_mode():
            return self.model.encode_image(pixels, normalize=True).float().numpy()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
