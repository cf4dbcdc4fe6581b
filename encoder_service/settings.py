"""Settings of the encoder server: flags, each defaulting from ``CLIPSEARCH_ENCODER_<FLAG>``.

Standard library only: the ``clipsearch`` CLI builds its parser from this module before
torch is imported. A bad value fails at start with a message naming the flag, whether it
came from the command line, the environment or ``EncoderSettings(...)`` in code.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

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


class SettingsError(ValueError):
    """A bad setting; the message starts with the flag's name."""


@dataclass(frozen=True)
class EncoderSettings:
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
    #: Prometheus /metrics port; 0 turns it off.
    metrics_port: int = 0

    def __post_init__(self) -> None:
        _check(
            _DEVICE.match(self.device) is not None,
            "--device",
            f"expected auto|cpu|cuda|cuda:N, got {self.device!r}",
        )
        _check(
            self.precision in PRECISIONS,
            "--precision",
            f"expected one of {PRECISIONS}, got {self.precision!r}",
        )
        _check(bool(self.model.strip()), "--model", "must not be empty")
        _check(0 <= self.port <= 65535, "--port", f"must be in [0, 65535], got {self.port}")
        _check(
            0 <= self.metrics_port <= 65535,
            "--metrics-port",
            f"must be in [0, 65535], got {self.metrics_port}",
        )
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
            _check(value >= 1, flag, f"must be >= 1, got {value}")
        _check(self.threads >= 0, "--threads", f"must be >= 0, got {self.threads}")
        _check(
            0 <= self.max_wait_ms <= 10_000, "--max-wait-ms", f"must be in [0, 10000], got {self.max_wait_ms}"
        )
        _check(self.grace_s >= 0, "--grace-s", f"must be >= 0, got {self.grace_s}")
        if self.pretrained is None or not self.pretrained.strip():
            _check(
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
        add = _Adder(parser)
        add("--host", str, d.host, "address to bind")
        add("--port", _int_in(0, 65535), d.port, "port to bind (0: any free port)")
        add("--model", str, d.model, "open_clip model name")
        add(
            "--pretrained",
            str,
            d.pretrained,
            f"open_clip pretrained tag, local checkpoint file, or '{RANDOM_WEIGHTS}' "
            f"(default for {DEMO_MODEL}: the shipped checkpoint; required for other models)",
        )
        add("--device", _device, d.device, "auto (CUDA when present), cpu, cuda or cuda:N")
        add("--precision", _choice(PRECISIONS), d.precision, "fp32, or fp16/bf16 autocast")
        add("--max-batch-size", _int_in(1, 4096), d.max_batch_size, "largest model batch (1: no batching)")
        add("--max-wait-ms", _float_in(0, 10_000), d.max_wait_ms, "how long a batch waits to fill")
        add("--max-queue", _int_in(1, 10**7), d.max_queue, "inputs waiting at most before RESOURCE_EXHAUSTED")
        add("--threads", _int_in(0, 1024), d.threads, "torch CPU threads (0: torch default)")
        add("--decode-workers", _int_in(1, 256), d.decode_workers, "image decode / tokenize threads")
        add("--max-message-bytes", _int_in(1024, 2**31 - 1), d.max_message_bytes, "largest gRPC message")
        add("--max-image-bytes", _int_in(1, 2**31 - 1), d.max_image_bytes, "largest encoded image")
        add("--max-image-pixels", _int_in(1, 2**40), d.max_image_pixels, "largest image, width x height")
        add("--max-text-bytes", _int_in(1, 2**31 - 1), d.max_text_bytes, "longest text, UTF-8 bytes")
        add("--max-concurrent-rpcs", _int_in(1, 100_000), d.max_concurrent_rpcs, "calls in flight at most")
        add("--stream-window", _int_in(1, 1024), d.stream_window, "EmbedStream chunks worked on at once")
        add("--no-reflection", _bool, d.no_reflection, "turn gRPC server reflection off", switch=True)
        add("--grace-s", _float_in(0, 3600), d.grace_s, "seconds in-flight calls get after SIGTERM")
        add("--metrics-port", _int_in(0, 65535), d.metrics_port, "Prometheus metrics port (0: off)")

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> EncoderSettings:
        try:
            return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})
        except SettingsError as exc:
            raise SystemExit(f"error: {exc}") from None


def _check(ok: bool, flag: str, problem: str) -> None:
    if not ok:
        raise SettingsError(f"{flag}: {problem}")


class _Adder:
    """Adds one flag whose default comes from its environment variable, parsed like the flag."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser

    def __call__(
        self, flag: str, parse: Callable[[str], Any], default: Any, help_: str, *, switch: bool = False
    ) -> None:
        env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        raw = os.environ.get(env)
        if raw is not None:
            try:
                default = _bool(raw) if switch else parse(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                self.parser.error(f"{flag} (from ${env}={raw!r}): {exc}")
        text = f"{help_} (default {default}; env {env})"
        if switch:
            self.parser.add_argument(flag, action="store_true", default=default, help=text)
        else:
            self.parser.add_argument(flag, type=parse, default=default, help=text)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


def _device(text: str) -> str:
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, "an integer", low, high)


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, "a number", low, high)


def _number_in(cast: Callable[[str], Any], what: str, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = what.split()[-1]
    return parse
