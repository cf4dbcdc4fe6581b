"""One place for how the SDK opens gRPC channels.

Keepalive matches the servers' minimum ping interval (no GOAWAY too_many_pings),
message limits match the servers' defaults, and UNAVAILABLE is retried by gRPC
itself through a service config (bounded attempts, exponential backoff). Retrying
writes is safe because upserts and deletes are idempotent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import grpc

DEFAULT_ENCODER_ADDRESS = "127.0.0.1:50051"
DEFAULT_INDEX_ADDRESS = "127.0.0.1:50052"
ENCODER_ENV = "CLIPSEARCH_ENCODER"
INDEX_ENV = "CLIPSEARCH_INDEX"

_RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "clipsearch.v1.EncoderService"},
                    {"service": "clipsearch.v1.IndexService"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass(frozen=True)
class ChannelOptions:
    max_message_bytes: int = 64 * 1024 * 1024
    #: Seconds between keepalive pings; the servers accept one every 10 s at most.
    keepalive_s: int = 30
    retries: bool = True
    compression: grpc.Compression | None = None

    def grpc_options(self) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_s * 1000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.enable_retries", 1 if self.retries else 0),
        ]
        if self.retries:
            options.append(("grpc.service_config", _RETRY_SERVICE_CONFIG))
        return options


def resolve_address(address: str | None, env_var: str, default: str) -> str:
    """Explicit address, else the environment variable, else the default."""
    return address or os.environ.get(env_var) or default


def open_channel(address: str, options: ChannelOptions | None = None) -> grpc.Channel:
    options = options or ChannelOptions()
    return grpc.insecure_channel(address, options=options.grpc_options(), compression=options.compression)


def open_aio_channel(address: str, options: ChannelOptions | None = None) -> grpc.aio.Channel:
    options = options or ChannelOptions()
    return grpc.aio.insecure_channel(address, options=options.grpc_options(), compression=options.compression)
