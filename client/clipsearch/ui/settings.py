"""Settings of ``clipsearch ui``; stdlib only so the CLI can build its parser without the ``ui`` extra."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from clipsearch.serving.config import add_flag, port_number, positive_int

ENV_PREFIX = "CLIPSEARCH_UI"


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


@dataclass(frozen=True)
class UISettings:
    host: str = "127.0.0.1"
    port: int = 8501
    #: Service addresses; None falls back to $CLIPSEARCH_ENCODER / $CLIPSEARCH_INDEX.
    encoder: str | None = None
    index: str | None = None
    collection: str = "demo"
    #: Seconds one search (encode + search) may take.
    timeout_s: float = 30.0
    #: Largest image a visitor may upload.
    max_upload_bytes: int = 16 * 1024 * 1024
    #: Largest k the page accepts.
    max_k: int = 100
    log_level: str = "INFO"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        default = cls()
        add_flag(parser, ENV_PREFIX, "--host", default=default.host, help="address to bind")
        add_flag(parser, ENV_PREFIX, "--port", type=port_number, default=default.port, help="port to bind")
        parser.add_argument("--encoder", help="encoder address [env CLIPSEARCH_ENCODER]")
        parser.add_argument("--index", help="index address [env CLIPSEARCH_INDEX]")
        add_flag(parser, ENV_PREFIX, "--collection", default=default.collection, help="collection to search")
        add_flag(
            parser,
            ENV_PREFIX,
            "--timeout",
            type=positive_float,
            default=default.timeout_s,
            help="seconds one search may take",
        )
        add_flag(
            parser,
            ENV_PREFIX,
            "--max-upload-bytes",
            type=positive_int,
            default=default.max_upload_bytes,
            help="largest query image accepted",
        )
        add_flag(
            parser,
            ENV_PREFIX,
            "--log-level",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            default=default.log_level,
            help="log level",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UISettings:
        return cls(
            host=args.host,
            port=args.port,
            encoder=args.encoder,
            index=args.index,
            collection=args.collection,
            timeout_s=args.timeout,
            max_upload_bytes=args.max_upload_bytes,
            log_level=args.log_level,
        )
