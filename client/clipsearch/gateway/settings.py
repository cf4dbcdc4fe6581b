"""Settings of ``clipsearch serve gateway``; stdlib only so the CLI can import it cheaply."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from clipsearch.serving.config import (
    OperationsSettings,
    add_flag,
    add_operations_flags,
    port_number,
    positive_int,
)

ENV_PREFIX = "CLIPSEARCH_GATEWAY"


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 50053
    #: Upstream services; None falls back to $CLIPSEARCH_ENCODER / $CLIPSEARCH_INDEX.
    encoder: str | None = None
    index: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_rpcs: int = 256
    reflection: bool = True
    grace_s: float = 10.0
    operations: OperationsSettings = field(default_factory=OperationsSettings)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        default = cls()
        add_flag(parser, ENV_PREFIX, "--host", default=default.host, help="address to bind")
        add_flag(parser, ENV_PREFIX, "--port", type=port_number, default=default.port, help="port to bind")
        parser.add_argument("--encoder", help="encoder address [env CLIPSEARCH_ENCODER]")
        parser.add_argument("--index", help="index address [env CLIPSEARCH_INDEX]")
        add_flag(
            parser,
            ENV_PREFIX,
            "--max-message-bytes",
            type=positive_int,
            default=default.max_message_bytes,
            help="largest request/response message",
        )
        add_flag(
            parser,
            ENV_PREFIX,
            "--max-concurrent-rpcs",
            type=positive_int,
            default=default.max_concurrent_rpcs,
            help="calls in flight beyond this get RESOURCE_EXHAUSTED",
        )
        add_flag(
            parser, ENV_PREFIX, "--no-reflection", action="store_true", help="turn server reflection off"
        )
        add_flag(
            parser, ENV_PREFIX, "--grace-s", type=float, default=default.grace_s, help="drain time on SIGTERM"
        )
        add_operations_flags(parser, ENV_PREFIX)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GatewaySettings:
        return cls(
            host=args.host,
            port=args.port,
            encoder=args.encoder,
            index=args.index,
            max_message_bytes=args.max_message_bytes,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            reflection=not args.no_reflection,
            grace_s=args.grace_s,
            operations=OperationsSettings.from_args(args),
        )
