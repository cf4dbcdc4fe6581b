"""Training batches: rendered catalog images, two augmented views each, and natural captions."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from clipsearch.apps.demo.catalog import Product, captions, make_products, render_product
from clipsearch.apps.demo.training.quality import degrade

Preprocess = Callable[[Image.Image], torch.Tensor]


def catalog_image(product: Product, image_size: int = 128) -> Image.Image:
    """The product's image exactly as `generate_catalog` stores it (JPEG, quality 90), decoded."""
    out = io.BytesIO()
    render_product(product, image_size).save(out, format="JPEG", quality=90)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


@dataclass
class Batch:
    #: view_a: every image as in the catalog or lightly shifted/cropped; view_b: the first
    #: ``heavy`` images degraded like a shopper's upload (shift, crop, low-quality JPEG).
    view_a: torch.Tensor
    view_b: torch.Tensor
    captions: list[str]
    #: targets[i, j] = 1 where caption j describes image i (all attributes it names match).
    targets: torch.Tensor


class TrainingPool:
    """``n`` rendered products of catalog ``seed``, held decoded in memory."""

    def __init__(self, n: int, seed: int, preprocess: Preprocess, image_size: int = 128):
        self.products = make_products(n, seed)
        self.images = [catalog_image(p, image_size) for p in self.products]
        self.preprocess = preprocess

    def batch(self, rng: np.random.Generator, size: int, heavy: int, full_caption_p: float = 0.7) -> Batch:
        chosen = rng.choice(len(self.products), size=size, replace=False)
        products = [self.products[i] for i in chosen]
        view_a = [self._light(self.images[i], rng) for i in chosen]
        view_b = [self._heavy(self.images[i], rng) for i in chosen[:heavy]]
        named_patterns = [p.pattern if rng.random() < full_caption_p else None for p in products]
        texts = []
        for product, pattern in zip(products, named_patterns, strict=True):
            options = captions(product.category, product.color, pattern)
            texts.append(options[int(rng.integers(len(options)))])
        targets = torch.tensor(
            [
                [
                    (p.category, p.color) == (q.category, q.color) and pattern in (None, p.pattern)
                    for q, pattern in zip(products, named_patterns, strict=True)
                ]
                for p in products
            ],
            dtype=torch.float32,
        )
        return Batch(
            view_a=torch.stack([self.preprocess(v) for v in view_a]),
            view_b=torch.stack([self.preprocess(v) for v in view_b]),
            captions=texts,
            targets=targets,
        )

    @staticmethod
    def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() < 0.5:
            return image
        data = degrade(image, rng, max_shift=0.04, keep=(0.9, 1.0), quality=(70, 95))
        return Image.open(io.BytesIO(data)).convert("RGB")

    @staticmethod
    def _heavy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        data = degrade(image, rng, max_shift=0.08, keep=(0.82, 1.0), quality=(10, 80))
        return Image.open(io.BytesIO(data)).convert("RGB")
