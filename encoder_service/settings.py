"""Settings of the encoder server: flags, each defaulting from ``CLIPSEARCH_ENCODER_<FLAG>``.

Standard library only: the ``clipsearch`` CLI builds its parser from this module before
torch is imported. A bad value fails at start with a message naming the flag, whether it
came from the command line, the environment or ``EncoderSettings(...)`` in code.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from clipsearch.server.config import (
    EnvFlags,
    OperationsSettings,
    SettingsError,
    check,
    choice,
    env_bool,
    float_in,
    int_in,
    settings_from_args,
)

ENV_PREFIX = "CLIPSEARCH_ENCODER_"
#: The model `make demo` serves; its checkpoint ships in the package.
DEMO_MODEL = "clipsearch-demo"
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "clipsearch-demo.pt"
#: The only way to ask for random weights (tests, benchmarks); logged as a warning.
RANDOM_WEIGHTS = "random"
#: Pillow's default ``Image.MAX_IMAGE_PIXELS`` (a 3-channel image this size is ~256 MiB).
PILLOW_MAX_IMAGE_PIXELS = 89_478_485

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
PRECISIONS = ("fp32", "fp16", "bf16")


__all__ = ["DEMO_CHECKPOINT", "DEMO_MODEL", "RANDOM_WEIGHTS", "EncoderSettings", "SettingsError"]


@dataclass(frozen=True)
class EncoderSettings(OperationsSettings):
    host: str = "127.0.0.1"
    port: int = 50051
    #: open_clip model name (a built-in config or one in encoder_service/model_configs).
    model: str = DEMO_MODEL
    #: open_clip pretrained tag, local checkpoint path, or "random". None: the shipped
    #: checkpoint for clipsearch-demo, an error for any other model.
    pretrained: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    #: Largest batch the model runs; 1 turns batching off.
    max_batch_size: int = 32
    #: How long the first item of a batch waits for company.
    max_wait_ms: float = 5.0
    #: Inputs admitted but not yet taken by the model (decoding or queued); beyond, calls
    #: get RESOURCE_EXHAUSTED at once.
    max_queue: int = 1024
    #: torch intra-op threads on CPU; 0 keeps torch's default (one per core).
    threads: int = 0
    #: Threads decoding images and tokenizing text off the model thread.
    decode_workers: int = min(4, os.cpu_count() or 1)
    max_message_bytes: int = 64 * 1024 * 1024
    #: One image's encoded bytes at most.
    max_image_bytes: int = 16 * 1024 * 1024
    #: One image's pixels at most (width x height), checked from the header before decoding.
    max_image_pixels: int = PILLOW_MAX_IMAGE_PIXELS
    #: One text's UTF-8 bytes at most (longer texts are refused, not truncated).
    max_text_bytes: int = 16 * 1024
    #: Calls in flight beyond this get RESOURCE_EXHAUSTED from gRPC itself.
    max_concurrent_rpcs: int = 256
    #: Chunks of one EmbedStream being worked on at once (reading further waits).
    stream_window: int = 4
    no_reflection: bool = False
    grace_s: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            _DEVICE.match(self.device) is not None,
            "--device",
            f"expected auto|cpu|cuda|cuda:N, got {self.device!r}",
        )
        check(
            self.precision in PRECISIONS,
            "--precision",
            f"expected one of {PRECISIONS}, got {self.precision!r}",
        )
        check(bool(self.model.strip()), "--model", "must not be empty")
        check(0 <= self.port <= 65535, "--port", f"must be in [0, 65535], got {self.port}")
        for flag, value in (
            ("--max-batch-size", self.max_batch_size),
            ("--max-queue", self.max_queue),
            ("--decode-workers", self.decode_workers),
            ("--max-message-bytes", self.max_message_bytes),
            ("--max-image-bytes", self.max_image_bytes),
            ("--max-image-pixels", self.max_image_pixels),
            ("--max-text-bytes", self.max_text_bytes),
            ("--max-concurrent-rpcs", self.max_concurrent_rpcs),
            ("--stream-window", self.stream_window),
        ):
            check(value >= 1, flag, f"must be >= 1, got {value}")
        check(self.threads >= 0, "--threads", f"must be >= 0, got {self.threads}")
        check(
            0 <= self.max_wait_ms <= 10_000, "--max-wait-ms", f"must be in [0, 10000], got {self.max_wait_ms}"
        )
        check(self.grace_s >= 0, "--grace-s", f"must be >= 0, got {self.grace_s}")
        if self.pretrained is None or not self.pretrained.strip():
            check(
                self.model == DEMO_MODEL,
                "--pretrained",
                f"required for --model {self.model}: an open_clip tag (e.g. laion2b_s34b_b79k), "
                f"a checkpoint file, or '{RANDOM_WEIGHTS}' for random weights",
            )

    @property
    def pretrained_source(self) -> str:
        """What to load: ``random``, an open_clip tag or a checkpoint path (the demo default)."""
        if self.pretrained and self.pretrained.strip():
            return self.pretrained.strip()
        return str(DEMO_CHECKPOINT)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        d = cls()
        add = EnvFlags(parser, ENV_PREFIX)
        add("--host", str, d.host, "address to bind")
        add("--port", int_in(0, 65535), d.port, "port to bind (0: any free port)")
        add("--model", str, d.model, "open_clip model name")
        add(
            "--pretrained",
            str,
            d.pretrained,
            f"open_clip pretrained tag, local checkpoint file, or '{RANDOM_WEIGHTS}' "
            f"(default for {DEMO_MODEL}: the shipped checkpoint; required for other models)",
        )
        add("--device", _device, d.device, "auto (CUDA when present), cpu, cuda or cuda:N")
        add("--precision", choice(PRECISIONS), d.precision, "fp32, or fp16/bf16 autocast")
        add("--max-batch-size", int_in(1, 4096), d.max_batch_size, "largest model batch (1: no batching)")
        add("--max-wait-ms", float_in(0, 10_000), d.max_wait_ms, "how long a batch waits to fill")
        add("--max-queue", int_in(1, 10**7), d.max_queue, "inputs waiting at most before RESOURCE_EXHAUSTED")
        add("--threads", int_in(0, 1024), d.threads, "torch CPU threads (0: torch default)")
        add("--decode-workers", int_in(1, 256), d.decode_workers, "image decode / tokenize threads")
        add("--max-message-bytes", int_in(1024, 2**31 - 1), d.max_message_bytes, "largest gRPC message")
        add("--max-image-bytes", int_in(1, 2**31 - 1), d.max_image_bytes, "largest encoded image")
        add("--max-image-pixels", int_in(1, 2**40), d.max_image_pixels, "largest image, width x height")
        add("--max-text-bytes", int_in(1, 2**31 - 1), d.max_text_bytes, "longest text, UTF-8 bytes")
        add("--max-concurrent-rpcs", int_in(1, 100_000), d.max_concurrent_rpcs, "calls in flight at most")
        add("--stream-window", int_in(1, 1024), d.stream_window, "EmbedStream chunks worked on at once")
        add("--no-reflection", env_bool, d.no_reflection, "turn gRPC server reflection off", switch=True)
        add("--grace-s", float_in(0, 3600), d.grace_s, "seconds in-flight calls get after SIGTERM")
        cls.add_operations_arguments(add)

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> EncoderSettings:
        return settings_from_args(cls, ns)


def _device(text: str) -> str:
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text
