"""Server-side TLS, token scopes and the safe-bind rule, shared by every server.

Tokens travel as ``authorization: Bearer <token>`` call metadata. A token file
has one ``<scope> <token>`` per line, scope ``read`` or ``write`` (write implies
read); ``#`` starts a comment. Health checking and reflection stay open so that
probes and tooling work without a token. Tokens are compared in constant time
and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clipsearch.server.settings import check_bind_is_safe, is_loopback

__all__ = ["TlsFiles", "TokenAuthInterceptor", "TokenScopes", "check_bind_is_safe", "is_loopback"]

#: Methods that change state; every other method of our services needs the read scope.
WRITE_METHODS = frozenset(
    {
        "/clipsearch.v1.IndexService/CreateCollection",
        "/clipsearch.v1.IndexService/DropCollection",
        "/clipsearch.v1.IndexService/AddFields",
        "/clipsearch.v1.IndexService/Upsert",
        "/clipsearch.v1.IndexService/Delete",
        "/clipsearch.v1.IndexService/UpdateMetadata",
        "/clipsearch.v1.IndexService/SetAlias",
        "/clipsearch.v1.IndexService/DeleteAlias",
        # A backup copies every item and fills the server's disk while it runs: an operator's call.
        "/clipsearch.v1.IndexService/Backup",
        "/clipsearch.v1.IndexService/Restore",
        "/clipsearch.v1.SearchService/Ingest",
    }
)
#: Reachable without a token: load-balancer probes and service discovery.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    #: When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        for name, path in (
            ("cert", self.cert_file),
            ("key", self.key_file),
            ("client CA", self.client_ca_file),
        ):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS {name} file {path} does not exist")
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class TokenScopes:
    read: frozenset[str] = field(default_factory=frozenset)
    write: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_file(cls, path: Path) -> TokenScopes:
        read: set[str] = set()
        write: set[str] = set()
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            scope, _, token = line.partition(" ")
            token = token.strip()
            if scope not in ("read", "write") or not token or " " in token:
                raise ValueError(f"{path}:{number}: expected '<read|write> <token>'")
            (write if scope == "write" else read).add(token)
        if not read and not write:
            raise ValueError(f"{path}: no tokens")
        return cls(frozenset(read), frozenset(write))

    def scope_of(self, token: str) -> str | None:
        # Constant-time comparisons against every token: no early exit on a match.
        is_write = any(hmac.compare_digest(token, known) for known in self.write)
        is_read = any(hmac.compare_digest(token, known) for known in self.read)
        return "write" if is_write else "read" if is_read else None


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a known token; PERMISSION_DENIED for a read token on a write."""

    def __init__(self, scopes: TokenScopes):
        self._scopes = scopes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        handler = await continuation(details)
        token = _bearer_token(details.invocation_metadata or ())
        scope = self._scopes.scope_of(token) if token else None
        if scope is None:
            return _deny(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown token (authorization: Bearer ...)",
            )
        if method in WRITE_METHODS and scope != "write":
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} needs a write token")
        return handler


def _bearer_token(metadata) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


def _deny(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that aborts at once."""

    async def abort(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(code, message)

    async def abort_streaming(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(abort)
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_streaming, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_streaming, **codec)
    return grpc.unary_unary_rpc_method_handler(abort, **codec)
