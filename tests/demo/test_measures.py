"""The training loss and the quality measurements themselves, on small hand-made inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from open_clip.loss import ClipLoss
from PIL import Image

from clipsearch.apps.demo.catalog import make_products, query_for, render_product
from clipsearch.apps.demo.training.loss import instance_loss, multi_positive_clip_loss
from clipsearch.apps.demo.training.quality import degrade, measure_image_queries, measure_text_queries

pytestmark = pytest.mark.unit


def _unit(rows: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def test_with_one_positive_per_row_the_loss_is_open_clips_clip_loss() -> None:
    images, texts, scale = _unit(8, seed=1), _unit(8, seed=2), torch.tensor(14.3)
    expected = ClipLoss()(images, texts, scale)
    assert multi_positive_clip_loss(images, texts, scale, torch.eye(8)).item() == pytest.approx(
        expected.item()
    )


def test_a_caption_that_fits_two_images_does_not_treat_either_as_negative() -> None:
    # Text 0 ("a red dress") fits images 0 and 1; it should score both alike, not image 0 alone.
    images = _unit(3, seed=3)
    targets = torch.tensor([[1.0, 0, 0], [1.0, 1, 0], [0, 0, 1]])
    between = torch.nn.functional.normalize(images[0] + images[1], dim=0)
    texts_even = torch.stack([between, images[1], images[2]])
    texts_first = torch.stack([images[0], images[1], images[2]])
    scale = torch.tensor(20.0)
    assert multi_positive_clip_loss(images, texts_even, scale, targets) < multi_positive_clip_loss(
        images, texts_first, scale, targets
    )


def test_instance_loss_is_low_when_each_view_is_nearest_its_own_anchor() -> None:
    anchors = _unit(6, seed=4)
    assert instance_loss(anchors[:3], anchors) < 0.01
    assert instance_loss(anchors[[1, 2, 0]], anchors) > 5


def test_text_figures_of_a_perfect_and_of_a_color_blind_search() -> None:
    products = make_products(150, seed=3)

    def matching(queries: list[str], k: int, wrong_color: bool = False) -> list[list[str]]:
        results = []
        for query in queries:
            scored = []
            for p in products:
                exact = query == query_for(p.category, p.color, p.pattern)
                pair = query == query_for(p.category, p.color)
                color_ok = (p.color in query) != wrong_color and p.category in query
                scored.append((not (exact or pair) if not wrong_color else not color_ok, p.id))
            results.append([i for _, i in sorted(scored)][:k])
        return results

    perfect = measure_text_queries(products, matching)
    assert (perfect.pair_top1, perfect.pair_precision_at_k, perfect.exact_top1) == (1.0, 1.0, 1.0)
    assert perfect.pair_queries == 110 and perfect.pair_misses == perfect.exact_misses == []

    blind = measure_text_queries(products, lambda q, k: matching(q, k, wrong_color=True))
    assert blind.pair_top1 == 0.0 and blind.exact_top1 == 0.0 and blind.pair_precision_at_k == 0.0
    assert (len(blind.pair_misses), len(blind.exact_misses)) == (blind.pair_queries, blind.exact_queries)


def test_image_figures_count_only_the_original_as_a_hit() -> None:
    products = make_products(20, seed=3)
    images = {p.id: render_product(p, 64) for p in products}

    def nearest_in_pixels(datas: list[bytes], k: int) -> list[list[str]]:
        catalog = {i: np.asarray(im.resize((16, 16)), dtype=np.float32) for i, im in images.items()}
        out = []
        for data in datas:
            query = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16)), dtype=np.float32)
            out.append(sorted(catalog, key=lambda i: float(np.abs(catalog[i] - query).sum()))[:k])
        return out

    figures = measure_image_queries(products, lambda p: images[p.id], nearest_in_pixels, trials=10)
    assert figures.trials == 10 and figures.top1 > 0.5
    always_first = measure_image_queries(products, lambda p: images[p.id], lambda d, k: [["p00000"]] * len(d))
    assert always_first.top1 == pytest.approx(1 / 20)


def test_degrade_shifts_crops_and_recompresses_deterministically() -> None:
    image = render_product(make_products(1, seed=2)[0], 128)
    data = degrade(image, np.random.default_rng(5))
    assert data == degrade(image, np.random.default_rng(5))
    assert data != degrade(image, np.random.default_rng(6))
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == "JPEG"
        assert all(0.89 * 128 <= side <= 0.97 * 128 for side in out.size)
