"""One place for how the SDK opens gRPC channels.

Keepalive matches the servers' minimum ping interval (no GOAWAY too_many_pings),
message limits match the servers' defaults, and UNAVAILABLE is retried by gRPC
itself through a service config (bounded attempts, exponential backoff). Retrying
writes is safe because upserts and deletes are idempotent.

Every call carries an ``x-request-id`` and, when configured, a bearer token; TLS
(and mutual TLS with a client certificate) is on when a CA file is given.
Defaults come from ``$CLIPSEARCH_TOKEN``, ``$CLIPSEARCH_TLS_CA``,
``$CLIPSEARCH_TLS_CERT`` and ``$CLIPSEARCH_TLS_KEY``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc

from clipsearch.request_context import REQUEST_ID_HEADER, outgoing_request_id

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
    #: Bearer token sent with every call (read or write scope on the server).
    token: str | None = field(default_factory=lambda: os.environ.get("CLIPSEARCH_TOKEN") or None)
    #: CA bundle that signed the server certificate; setting it turns TLS on.
    tls_ca_file: str | None = field(default_factory=lambda: os.environ.get("CLIPSEARCH_TLS_CA") or None)
    #: Client certificate and key, for servers that require mutual TLS.
    tls_cert_file: str | None = field(default_factory=lambda: os.environ.get("CLIPSEARCH_TLS_CERT") or None)
    tls_key_file: str | None = field(default_factory=lambda: os.environ.get("CLIPSEARCH_TLS_KEY") or None)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls_ca_file:
            return None
        cert = Path(self.tls_cert_file).read_bytes() if self.tls_cert_file else None
        key = Path(self.tls_key_file).read_bytes() if self.tls_key_file else None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca_file).read_bytes(), private_key=key, certificate_chain=cert
        )

    def call_metadata(self) -> list[tuple[str, str]]:
        metadata = [(REQUEST_ID_HEADER, outgoing_request_id())]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        return metadata

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
    credentials = options.credentials()
    if credentials is None:
        channel = grpc.insecure_channel(
            address, options=options.grpc_options(), compression=options.compression
        )
    else:
        channel = grpc.secure_channel(
            address, credentials, options=options.grpc_options(), compression=options.compression
        )
    return grpc.intercept_channel(channel, _MetadataInterceptor(options))


def open_aio_channel(address: str, options: ChannelOptions | None = None) -> grpc.aio.Channel:
    options = options or ChannelOptions()
    credentials = options.credentials()
    # grpc-stubs types aio ClientInterceptor as a placeholder that must be cast to.
    interceptors = cast(
        "list[grpc.aio.ClientInterceptor]",
        [
            _AioUnaryUnary(options),
            _AioUnaryStream(options),
            _AioStreamUnary(options),
            _AioStreamStream(options),
        ],
    )
    grpc_options = options.grpc_options()
    if credentials is None:
        return grpc.aio.insecure_channel(
            address, options=grpc_options, compression=options.compression, interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        address, credentials, options=grpc_options, compression=options.compression, interceptors=interceptors
    )


def _with_metadata(details, options: ChannelOptions):
    metadata = list(details.metadata or ()) + options.call_metadata()
    return (
        details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)
    )


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the request id and token to every call of a sync channel."""

    def __init__(self, options: ChannelOptions):
        self._options = options

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(_with_metadata(details, self._options), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(_with_metadata(details, self._options), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(_with_metadata(details, self._options), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(_with_metadata(details, self._options), request_iterator)


class _AioInterceptor:
    def __init__(self, options: ChannelOptions):
        self._options = options

    async def _call(self, continuation, details, request):
        return await continuation(_with_metadata(details, self._options), request)


class _AioUnaryUnary(_AioInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await self._call(continuation, details, request)


class _AioUnaryStream(_AioInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await self._call(continuation, details, request)


class _AioStreamUnary(_AioInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await self._call(continuation, details, request_iterator)


class _AioStreamStream(_AioInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await self._call(continuation, details, request_iterator)
