"""Settings of ``clipsearch ui``; stdlib only so the CLI can build its parser without the ``ui`` extra."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from clipsearch.server.config import EnvFlags, choice, env_bool, float_in, int_in

ENV_PREFIX = "CLIPSEARCH_UI_"


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
    #: Allow a non-loopback --host: the page has no TLS or login of its own.
    insecure: bool = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        d = cls()
        add = EnvFlags(parser, ENV_PREFIX)
        add("--host", str, d.host, "address to bind")
        add("--port", int_in(0, 65535), d.port, "port to bind (0: any free port)")
        parser.add_argument(
            "--encoder", help="encoder address (default $CLIPSEARCH_ENCODER or 127.0.0.1:50051)"
        )
        parser.add_argument("--index", help="index address (default $CLIPSEARCH_INDEX or 127.0.0.1:50052)")
        add("--collection", str, d.collection, "collection to search")
        add("--timeout", float_in(0.001, 3600), d.timeout_s, "seconds one search may take")
        add("--max-upload-bytes", int_in(1, 2**31 - 1), d.max_upload_bytes, "largest query image accepted")
        add("--log-level", choice(("DEBUG", "INFO", "WARNING", "ERROR")), d.log_level, "log level")
        add(
            "--insecure",
            env_bool,
            d.insecure,
            "allow a non-loopback --host (the page has no TLS or login; put a proxy in front)",
            switch=True,
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
            insecure=args.insecure,
        )
