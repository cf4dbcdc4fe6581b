"""Contrastive losses for the demo model.

`multi_positive_clip_loss` is open_clip's `ClipLoss` (symmetric cross-entropy over the
image-text similarity matrix) with soft targets: a caption that leaves the pattern out ("a red
dress") is a positive for every red dress in the batch, not a false negative. With an identity
target matrix it is exactly `ClipLoss` (tests/demo/test_measures.py checks this).
`instance_loss` is InfoNCE between a degraded view of an image and all catalog views (SimCLR):
it keeps what tells two red striped dresses apart, so image→image search finds the very product.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def multi_positive_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """``targets[i, j]`` is 1 where text j describes image i; every row and column needs one."""
    logits_per_image = logit_scale * image_features @ text_features.T
    image_to_text = targets / targets.sum(dim=1, keepdim=True)
    text_to_image = targets.T / targets.T.sum(dim=1, keepdim=True)
    return (
        F.cross_entropy(logits_per_image, image_to_text) + F.cross_entropy(logits_per_image.T, text_to_image)
    ) / 2


def instance_loss(views: torch.Tensor, anchors: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Each of the n ``views`` must pick its own anchor (the first n ``anchors``) among all anchors."""
    logits = views @ anchors.T / temperature
    return F.cross_entropy(logits, torch.arange(views.shape[0], device=views.device))
