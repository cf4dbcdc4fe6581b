"""Settings of the encoder server: flags, each defaulting from ``CLIPSEARCH_ENCODER_<FLAG>``.

Standard library only: the ``clipsearch`` CLI builds its parser from this module before
torch is imported. A bad value fails at start with a message naming the flag, whether it
came from the command line, the environment or ``EncoderSettings(...)`` in code.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch._options import OptionError, choice, float_in, int_in, matching, option
from clipsearch.server.settings import GrpcServerSettings
from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL, PILLOW_MAX_IMAGE_PIXELS, RANDOM_WEIGHTS

ENV_PREFIX = "CLIPSEARCH_ENCODER_"

_DEVICE = matching(r"auto|cpu|cuda|cuda:\d+", "auto, cpu, cuda or cuda:N")
_BACKGROUND = matching(r"white|black|#[0-9a-fA-F]{6}", "white, black or #rrggbb")
PRECISIONS = ("fp32", "fp16", "bf16")
IMAGE_DECODES = ("auto", "cpu", "device")


__all__ = ["DEMO_CHECKPOINT", "DEMO_MODEL", "RANDOM_WEIGHTS", "EncoderSettings"]


@dataclass(frozen=True)
class EncoderSettings(GrpcServerSettings):
    ENV_PREFIX = ENV_PREFIX

    port: int = option(50051, "port to bind (0: any free port)", parse=int_in(0, 65535))
    model: str = option(DEMO_MODEL, "open_clip model name (a built-in config or one in model_configs/)")
    #: None: the shipped checkpoint for clipsearch-demo, an error for any other model.
    pretrained: str | None = option(
        None,
        f"open_clip pretrained tag, local checkpoint file, or '{RANDOM_WEIGHTS}' "
        f"(for {DEMO_MODEL}: the shipped checkpoint; required for other models)",
    )
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N", parse=_DEVICE)
    precision: str = option("fp32", "fp32, or fp16/bf16 autocast", parse=choice(PRECISIONS))
    max_batch_size: int = option(
        0, "largest model batch (1: no batching; 0: by device, 32 on CPU, 256 on CUDA)", parse=int_in(0, 4096)
    )
    max_wait_ms: float = option(5.0, "how long a batch waits to fill", parse=float_in(0, 10_000))
    max_queue: int = option(
        1024, "inputs admitted and not yet run at most (beyond: RESOURCE_EXHAUSTED)", parse=int_in(1, 10**7)
    )
    threads: int = option(
        0,
        "torch CPU threads (0: one per usable core, or 1 where this model runs faster so; timed at start)",
        parse=int_in(0, 1024),
    )
    decode_workers: int = option(
        0,
        "image decode / tokenize threads (0: by device, min(4, cores) on CPU, min(16, cores) on CUDA)",
        parse=int_in(0, 256),
    )
    image_decode: str = option(
        "auto",
        "where JPEGs are decoded and resized: device (nvJPEG on CUDA), cpu (Pillow in the decode "
        "threads), auto (device on CUDA when its start-up check passes, else cpu)",
        parse=choice(IMAGE_DECODES),
    )
    max_image_bytes: int = option(16 * 1024 * 1024, "largest encoded image", parse=int_in(1, 2**31 - 1))
    max_image_pixels: int = option(
        0,
        "most pixels decoded (width x height from the header; a JPEG over it is decoded at a reduced "
        f"size, a PNG or WebP refused); 0: what the model can use, (32 x its input size)^2 up to "
        f"{PILLOW_MAX_IMAGE_PIXELS}",
        parse=int_in(0, PILLOW_MAX_IMAGE_PIXELS),
    )
    image_background: str = option(
        "white",
        "colour transparent image pixels are composited onto: white, black or #rrggbb",
        parse=_BACKGROUND,
    )
    max_text_bytes: int = option(
        16 * 1024, "longest text, UTF-8 bytes (longer is refused, not truncated)", parse=int_in(1, 2**31 - 1)
    )
    query_cache_mib: int = option(
        64,
        "memory for the query-embedding cache of Embed texts, MiB (0: off); keyed by model "
        "fingerprint and normalised text, least recently used out first",
        parse=int_in(0, 1024 * 1024),
    )
    stream_window: int = option(
        4,
        "EmbedStream chunks worked on at once (streams that do not acknowledge reads)",
        parse=int_in(1, 1024),
    )
    require_stream_acks: bool = option(
        False,
        "refuse EmbedStreams that do not acknowledge the responses they read (read_window 0): "
        "a caller that stops reading then stops its stream's work within its window",
        switch=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model.strip():
            raise OptionError("--model: must not be empty")
        if self.pretrained is None or not self.pretrained.strip():
            if self.model != DEMO_MODEL:
                raise OptionError(
                    f"--pretrained: required for --model {self.model}: an open_clip tag (e.g. "
                    f"laion2b_s34b_b79k), a checkpoint file, or '{RANDOM_WEIGHTS}' for random weights"
                )

    @property
    def pretrained_source(self) -> str:
        """What to load: ``random``, an open_clip tag or a checkpoint path (the demo default)."""
        if self.pretrained and self.pretrained.strip():
            return self.pretrained.strip()
        return str(DEMO_CHECKPOINT)
