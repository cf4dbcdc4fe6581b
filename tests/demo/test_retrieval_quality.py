"""Retrieval quality of the trained demo model through SDK → encoder → index, over real gRPC.

Each figure is checked on a freshly ingested collection and on one where a third of the
catalog was deleted and re-upserted (see conftest.py). Thresholds are those of issue 3.
"""

from __future__ import annotations

import pytest
from quality_stack import Figures, Stack

pytestmark = pytest.mark.quality


def test_every_category_color_query_finds_that_category_and_color_first(figures: Figures) -> None:
    text = figures.text
    assert text.pair_queries == 110  # every categoryxcolor pair of the 300-product catalog
    assert text.pair_top1 == 1.0, text.pair_misses


def test_category_color_precision_at_5(figures: Figures) -> None:
    assert figures.text.pair_precision_at_k >= 0.9


def test_category_color_pattern_queries_find_the_exact_product_first(figures: Figures) -> None:
    assert figures.text.exact_top1 >= 0.9, figures.text.exact_misses


def test_degraded_catalog_image_finds_its_original_first(figures: Figures) -> None:
    assert figures.image.trials == 150
    assert figures.image.top1 >= 0.95, figures.image.misses


def test_hit_metadata_belongs_to_the_hit_id(figures: Figures) -> None:
    assert figures.mismatches == []


def test_deleted_products_are_never_returned(stack: Stack) -> None:
    assert len(stack.churned_ids) == 100
    assert stack.returned_while_deleted, "the probe searches returned nothing"
    assert stack.returned_while_deleted.isdisjoint(stack.churned_ids)


def test_queries_still_right_while_a_third_is_deleted(stack: Stack) -> None:
    assert stack.while_deleted.pair_top1 == 1.0, stack.while_deleted.pair_misses
    assert stack.while_deleted.exact_top1 >= 0.9, stack.while_deleted.exact_misses


def test_the_service_embeds_like_open_clip_with_its_val_transform(stack: Stack) -> None:
    """Same checkpoint, same preprocessing: the service's vectors are those of the local model."""
    import open_clip
    import torch
    from quality_stack import CHECKPOINT, load_image

    open_clip.add_model_config(CHECKPOINT.parents[1] / "model_configs")
    model, _, preprocess = open_clip.create_model_and_transforms(
        "clipsearch-demo", pretrained=str(CHECKPOINT)
    )
    tokenizer = open_clip.get_tokenizer("clipsearch-demo")
    model.eval()
    products = stack.products[:8]
    images = [load_image(stack.catalog, p) for p in products]
    texts = [p.title.lower() for p in products]
    with torch.no_grad():
        local_images = model.encode_image(
            torch.stack([preprocess(i) for i in images]), normalize=True
        ).numpy()
        local_texts = model.encode_text(tokenizer(texts), normalize=True).numpy()
    paths = [stack.catalog.parent / "images" / f"{p.id}.jpg" for p in products]
    served_images = stack.client.encoder.embed_images([p.read_bytes() for p in paths])
    served_texts = stack.client.encoder.embed_texts(texts)
    assert (served_images * local_images).sum(axis=1).min() > 0.999
    assert (served_texts * local_texts).sum(axis=1).min() > 0.999
