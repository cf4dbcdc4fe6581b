"""Settings of ``clipsearch serve gateway``; stdlib only so the CLI can import it cheaply."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from clipsearch.server.config import (
    EnvFlags,
    OperationsSettings,
    check,
    env_bool,
    float_in,
    int_in,
    settings_from_args,
)

ENV_PREFIX = "CLIPSEARCH_GATEWAY_"


@dataclass(frozen=True)
class GatewaySettings(OperationsSettings):
    host: str = "127.0.0.1"
    port: int = 50053
    #: Upstream services; None falls back to $CLIPSEARCH_ENCODER / $CLIPSEARCH_INDEX.
    encoder: str | None = None
    index: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_rpcs: int = 256
    no_reflection: bool = False
    grace_s: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.port <= 65535, "--port", f"must be in [0, 65535], got {self.port}")

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
        add("--max-message-bytes", int_in(1024, 2**31 - 1), d.max_message_bytes, "largest gRPC message")
        add("--max-concurrent-rpcs", int_in(1, 100_000), d.max_concurrent_rpcs, "calls in flight at most")
        add("--no-reflection", env_bool, d.no_reflection, "turn gRPC server reflection off", switch=True)
        add("--grace-s", float_in(0, 3600), d.grace_s, "seconds in-flight calls get after SIGTERM")
        cls.add_operations_arguments(add)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GatewaySettings:
        return settings_from_args(cls, args)
