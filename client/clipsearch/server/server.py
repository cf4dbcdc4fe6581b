"""A grpc.aio server with what every clipsearch server needs.

Health checking (``grpc.health.v1``) starts NOT_SERVING and is switched to
SERVING by the caller once its model or index is loaded; reflection is on unless
disabled; stopping flips health to NOT_SERVING at once and stops the server with a
grace period so in-flight calls finish, then runs the server's cleanup list (last
added, first run); ``maximum_concurrent_rpcs`` bounds the work in flight (gRPC
answers RESOURCE_EXHAUSTED beyond it). :func:`clipsearch.server.serve.serve` runs one
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from clipsearch.server.observability import ObservabilityInterceptor, RpcMetrics
from clipsearch.server.security import TlsFiles, TokenAuthInterceptor, TokenScopes
from clipsearch.server.serve import StartError, bind_error
from clipsearch.server.settings import GrpcServerSettings, check_bind_is_safe

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)

#: Client and server keepalive settings agree on these, so neither side sees
#: GOAWAY "too_many_pings" (see clipsearch.channel for the client half).
MIN_PING_INTERVAL_MS = 10_000


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    #: Largest request or response message, bytes.
    max_message_bytes: int = 64 * 1024 * 1024
    #: Calls in flight beyond this get RESOURCE_EXHAUSTED at once. None: unbounded.
    max_concurrent_rpcs: int | None = 256
    reflection: bool = True
    #: Seconds in-flight calls get to finish after SIGTERM.
    grace_s: float = 10.0
    #: Serve TLS (mutual TLS when it names a client CA).
    tls: TlsFiles | None = None
    #: Require ``authorization: Bearer`` tokens with read/write scopes.
    tokens: TokenScopes | None = None
    #: Allow a non-loopback bind without TLS and tokens.
    insecure: bool = False
    #: Serve Prometheus metrics over HTTP on this port (same host); 0 = off.
    metrics_port: int = 0
    #: How to change the port, for the message when it cannot be bound.
    port_flag: str = "--port"
    port_env: str | None = None


def options_from_settings(settings: GrpcServerSettings) -> ServerOptions:
    """The :class:`ServerOptions` a server's settings describe (TLS files read, tokens loaded)."""
    tls = None
    if settings.tls_cert and settings.tls_key:
        client_ca = Path(settings.tls_client_ca) if settings.tls_client_ca else None
        tls = TlsFiles(Path(settings.tls_cert), Path(settings.tls_key), client_ca)
    return ServerOptions(
        host=settings.host,
        port=settings.port,
        max_message_bytes=settings.max_message_bytes,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        reflection=not settings.no_reflection,
        grace_s=settings.grace_s,
        tls=tls,
        tokens=TokenScopes.from_file(Path(settings.token_file)) if settings.token_file else None,
        insecure=settings.insecure,
        metrics_port=settings.metrics_port,
        port_flag=settings.flag_of("port"),
        port_env=settings.env_var("--port"),
    )


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer and how to register it: ``add_XServicer_to_server`` and its full name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    full_name: str


class ManagedServer:
    """Owns a grpc.aio server, its health servicer and its shutdown."""

    def __init__(self, options: ServerOptions, services: Sequence[ServiceBinding]):
        self.options = options
        self.services = list(services)
        self._cleanups: list[Callable[[], Any]] = []
        # grpc_health's stubs lack its aio module.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.port: int | None = None
        self.metrics_port: int | None = None
        #: This server's Prometheus registry; cores add their own metrics to it.
        self.metrics_registry = CollectorRegistry()
        self._metrics_http: WSGIServer | None = None
        interceptors: list[grpc.aio.ServerInterceptor] = [
            ObservabilityInterceptor(RpcMetrics(self.metrics_registry))
        ]
        if options.tokens is not None:
            interceptors.append(TokenAuthInterceptor(options.tokens))
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", options.max_message_bytes),
                ("grpc.max_send_message_length", options.max_message_bytes),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        )
        self._stopping = False

    def add_cleanup(self, cleanup: Callable[[], Awaitable[Any] | Any]) -> None:
        """Runs ``cleanup()`` (sync or async) once the server has stopped; the last added runs first."""
        self._cleanups.append(cleanup)

    @property
    def server(self) -> grpc.aio.Server:
        return self._server

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> int:
        """Binds and starts serving RPCs; health says NOT_SERVING until :meth:`set_serving`."""
        for binding in self.services:
            binding.add_to_server(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [b.full_name for b in self.services]
        if self.options.reflection:
            reflection.enable_server_reflection(
                [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
            )
        options = self.options
        try:
            check_bind_is_safe(
                options.host,
                tls=options.tls is not None,
                auth=options.tokens is not None,
                insecure=options.insecure,
            )
        except ValueError as exc:
            raise StartError(str(exc)) from None
        address = f"{options.host}:{options.port}"
        try:
            if options.tls is not None:
                self.port = self._server.add_secure_port(address, options.tls.server_credentials())
            else:
                self.port = self._server.add_insecure_port(address)
        except RuntimeError:  # grpc: "Failed to bind to address ..."
            self.port = 0
        if self.port == 0:
            raise bind_error(options.host, options.port, options.port_flag, options.port_env)
        if options.metrics_port:
            try:
                self._metrics_http, _ = start_http_server(
                    options.metrics_port, addr=options.host, registry=self.metrics_registry
                )
            except OSError:
                raise bind_error(
                    options.host, options.metrics_port, "--metrics-port", None, what="metrics"
                ) from None
            self.metrics_port = self._metrics_http.server_port
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        log.info("listening on %s:%d", self.options.host, self.port)
        return self.port

    async def open(self):
        """Starts, then :meth:`load`; a failure to load stops the server again. Returns the server."""
        await self.start()
        try:
            await self.load()
        except BaseException:
            await self.stop(0)
            raise
        return self

    async def load(self) -> None:
        """What must be ready before SERVING (a model, the collections); servers override it."""
        await self.set_serving()

    async def set_serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        """The server can no longer do its work (it stays up to say so, and to answer reads)."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _set_all(self, status: int) -> None:
        for name in ["", *(b.full_name for b in self.services)]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Health turns NOT_SERVING at once; in-flight calls get ``grace_s``; then the cleanups run."""
        if self._stopping:
            return
        self._stopping = True
        try:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(self.options.grace_s if grace_s is None else grace_s)
        finally:
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
            while self._cleanups:
                cleanup = self._cleanups.pop()
                try:
                    result = cleanup()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("cleanup %r failed while stopping", cleanup)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
