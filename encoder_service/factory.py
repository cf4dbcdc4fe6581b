"""Settings -> a ready encoder core: the one place both the gRPC server and the Ray replica build it."""

from __future__ import annotations

import torch

from encoder_service.batching import BatchPolicy
from encoder_service.core import EncoderCore, InputLimits
from encoder_service.images import ImageLimits, fitting_pixels, parse_background
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import load_model
from encoder_service.settings import EncoderSettings


def core_from_settings(settings: EncoderSettings, metrics: EncoderMetrics | None = None) -> EncoderCore:
    """Loads the model (blocking) and builds the core as the settings say."""
    s = settings
    if s.threads:
        torch.set_num_threads(s.threads)
    model = load_model(s.model, s.pretrained_source, device=s.device, precision=s.precision)
    side = model.identity.image_size
    return EncoderCore(
        model,
        policy=BatchPolicy(s.max_batch_size, s.max_wait_ms, s.max_queue),
        limits=InputLimits(
            max_text_bytes=s.max_text_bytes,
            image=ImageLimits(
                max_bytes=s.max_image_bytes,
                max_pixels=s.max_image_pixels or fitting_pixels(side),
                background=parse_background(s.image_background),
                reduce_to=2 * side,
            ),
        ),
        decode_workers=s.decode_workers,
        metrics=metrics,
    )
