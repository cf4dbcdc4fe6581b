"""A grpc.aio server with what every clipsearch server needs.

Health checking (``grpc.health.v1``) starts NOT_SERVING and is switched to
SERVING by the caller once its model or index is loaded; reflection is on unless
disabled; SIGTERM/SIGINT flip health to NOT_SERVING at once and stop the server
with a grace period so in-flight calls finish; ``maximum_concurrent_rpcs`` bounds
the work in flight (gRPC answers RESOURCE_EXHAUSTED beyond it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from clipsearch.server.observability import ObservabilityInterceptor, RpcMetrics
from clipsearch.server.security import TlsFiles, TokenAuthInterceptor, TokenScopes, check_bind_is_safe

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


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer and how to register it: ``add_XServicer_to_server`` and its full name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    full_name: str


class ManagedServer:
    """Owns a grpc.aio server, its health servicer and its shutdown."""

    def __init__(
        self,
        options: ServerOptions,
        services: Sequence[ServiceBinding],
        on_stop: Sequence[Callable[[], Any]] = (),
    ):
        """``on_stop`` callables (sync or async) run after the server stopped, e.g. to close clients."""
        self.options = options
        self.services = list(services)
        self._on_stop = list(on_stop)
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
        check_bind_is_safe(
            self.options.host,
            tls=self.options.tls is not None,
            auth=self.options.tokens is not None,
            insecure=self.options.insecure,
        )
        address = f"{self.options.host}:{self.options.port}"
        if self.options.tls is not None:
            self.port = self._server.add_secure_port(address, self.options.tls.server_credentials())
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"could not bind {address}")
        if self.options.metrics_port:
            self._metrics_http, _ = start_http_server(
                self.options.metrics_port, addr=self.options.host, registry=self.metrics_registry
            )
            self.metrics_port = self._metrics_http.server_port
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        log.info("listening on %s:%d", self.options.host, self.port)
        return self.port

    async def set_serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def _set_all(self, status: int) -> None:
        for name in ["", *(b.full_name for b in self.services)]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Health turns NOT_SERVING at once; in-flight calls get ``grace_s`` to finish."""
        if self._stopping:
            return
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.options.grace_s if grace_s is None else grace_s)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        for callback in self._on_stop:
            result = callback()
            if asyncio.iscoroutine(result):
                await result

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def run_until_signalled(server: ManagedServer, on_stop: Callable[[], Any] | None = None) -> None:
    """Waits for SIGTERM or SIGINT, then stops gracefully and runs ``on_stop``."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    waiter = asyncio.create_task(server.wait_for_termination())
    signalled = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({waiter, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if signalled.done():
        log.info("signal received: draining for up to %.1fs", server.options.grace_s)
    await server.stop()
    waiter.cancel()
    signalled.cancel()
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
