"""A grpc.aio server with what every clipsearch server needs.

Health checking (``grpc.health.v1``) starts NOT_SERVING and is switched to
SERVING by the caller once its model or index is loaded; reflection is on unless
disabled; ``maximum_concurrent_rpcs`` bounds the work in flight (gRPC answers
RESOURCE_EXHAUSTED beyond it); undecodable requests are INVALID_ARGUMENT
(:mod:`clipsearch.server.calls`). :func:`clipsearch.server.serve.serve` runs one until
SIGTERM or SIGINT.

Stopping (:meth:`ManagedServer.stop`) takes at most the grace period plus
:data:`CLEANUP_FLOOR_S`: health turns NOT_SERVING at once and health Watch streams end
after saying so; new calls get UNAVAILABLE; streams that can end early (EmbedStream)
stop reading and finish what they hold; in-flight calls get the grace period, and
those still running at its end get UNAVAILABLE (not gRPC core's CANCELLED, which
retry policies do not retry); then the cleanup list (last added, first run) gets
what is left of the grace period, and never less than :data:`CLEANUP_FLOOR_S`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from clipsearch.server.calls import CallGuard
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
#: Of the grace period, what is kept for telling the calls still running that the server stops.
ABORT_S = 0.25
#: The cleanups (closing the model, snapshotting the index) get at least this after the grace period.
CLEANUP_FLOOR_S = 1.0


class HealthServicer(health.aio.HealthServicer):  # type: ignore[name-defined,misc]
    """grpc_health's servicer, whose Watch streams end once they have said NOT_SERVING for a stop.

    An open Watch is a call in flight: the reference servicer keeps it open until the grace
    period ends and gRPC core cancels it, so every stop took the whole grace period (plus
    cleanups: 6.5-9.4 s for a 5 s grace). Ending the stream (OK) after the NOT_SERVING it
    owes the watcher lets the stop finish as soon as the real work has.
    """

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        # The reference loop (grpc_health.v1._async), plus the return once shutting down.
        condition = self._server_watchers[request.service]
        self._watcher_count_by_service[request.service] += 1
        last_status = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(
                        request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                    )
                    if status != last_status:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                    last_status = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[request.service] -= 1
            if self._watcher_count_by_service[request.service] == 0:
                del self._server_watchers[request.service]
                del self._watcher_count_by_service[request.service]


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
    #: A log line per call ("all") or per call that did not end OK ("errors").
    access_log: str = "all"
    #: How to change the port, for the message when it cannot be bound.
    port_flag: str = "--port"
    port_env: str | None = None
    metrics_port_env: str | None = None


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
        access_log=settings.access_log,
        port_flag=settings.flag_of("port"),
        port_env=settings.env_var("--port"),
        metrics_port_env=settings.env_var("--metrics-port"),
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
        self.health = HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        #: This server's Prometheus registry; cores add their own metrics to it.
        self.metrics_registry = CollectorRegistry()
        self._metrics_http: WSGIServer | None = None
        #: Undecodable requests, and the drain (clipsearch.server.calls).
        self.calls = CallGuard()
        #: Set when the stop begins: long streams stop taking work and end (the encoder's EmbedStream).
        self.draining = asyncio.Event()
        #: ``time.monotonic()`` by which the stop means to be done (cleanups read it); None until then.
        self.stop_deadline: float | None = None
        interceptors: list[grpc.aio.ServerInterceptor] = [
            ObservabilityInterceptor(RpcMetrics(self.metrics_registry), options.access_log)
        ]
        if options.tokens is not None:
            interceptors.append(TokenAuthInterceptor(options.tokens))
        interceptors.append(self.calls)
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
                    options.host,
                    options.metrics_port,
                    "--metrics-port",
                    options.metrics_port_env,
                    what="metrics endpoint",
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

    async def stop(self, grace_s: float | None = None, *, exiting: bool = False) -> None:
        """Stops within ``grace_s`` (default: the options') + :data:`CLEANUP_FLOOR_S` (module docstring).

        ``exiting``: the process ends right after (``serve``), so gRPC core's listener is not shut
        down: until the process is gone every call gets UNAVAILABLE from the drain, and calls in
        transit then see the connection close (UNAVAILABLE too). gRPC core's own shutdown cancels
        (CANCELLED) the calls it accepted but had not handed over yet: a window of milliseconds
        that callers retrying at once do hit (1 of ~400 calls here). In process (tests) the
        listener is shut down, so the port is free again.
        """
        if self._stopping:
            return
        self._stopping = True
        grace = self.options.grace_s if grace_s is None else grace_s
        started = time.monotonic()
        self.stop_deadline = started + grace
        try:
            self.calls.begin_drain()  # new calls: UNAVAILABLE
            self.draining.set()
            await self.health.enter_graceful_shutdown()  # NOT_SERVING; Watch streams end
            if not await self.calls.wait_idle(grace - ABORT_S):
                await self.calls.abort_running(ABORT_S)
            if not exiting:  # nothing of ours is left in flight: gRPC core's own stop is quick
                await self._server.stop(max(0.0, min(ABORT_S, self.stop_deadline - time.monotonic())))
        finally:
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
            cleanup_deadline = max(self.stop_deadline, time.monotonic() + CLEANUP_FLOOR_S)
            self.stop_deadline = cleanup_deadline
            while self._cleanups:
                cleanup = self._cleanups.pop()
                try:
                    result = cleanup()
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, max(0.01, cleanup_deadline - time.monotonic()))
                except TimeoutError:
                    log.warning(
                        "cleanup %r did not finish within the grace period: stopping without it", cleanup
                    )
                except Exception:
                    log.exception("cleanup %r failed while stopping", cleanup)
            log.info("stopped %.2fs after the stop began", time.monotonic() - started)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
