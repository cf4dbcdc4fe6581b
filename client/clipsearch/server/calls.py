"""Every call of a clipsearch server, whatever its method: undecodable requests and the drain.

:class:`CallGuard` is a server interceptor of :class:`~clipsearch.server.server.ManagedServer`:

* **Undecodable requests** become INVALID_ARGUMENT. grpc.aio answers a request its
  deserializer cannot parse (garbage bytes, a filter nested past protobuf's recursion limit)
  with UNKNOWN; here the deserializer's failure is kept and the handler answers it with
  INVALID_ARGUMENT (a ``BadRequest`` naming the message), for every method of every server.
* **The drain.** :meth:`CallGuard.begin_drain` makes every new call of the server's own
  services fail at once with UNAVAILABLE and a ``RetryInfo`` (health and reflection still
  answer), :meth:`CallGuard.wait_idle` waits for the calls in flight, and
  :meth:`CallGuard.abort_running` ends those still running at the end of the grace period
  with UNAVAILABLE. Both are retryable by standard retry policies; CANCELLED (what gRPC
  core gives calls it cuts when its own grace ends) is not.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from clipsearch.errors import InvalidArgumentError, UnavailableError
from clipsearch.server.status import to_status

log = logging.getLogger(__name__)

#: Methods every server keeps answering while it drains (probes and tooling).
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Undecodable:
    """Stands for request bytes the method's message cannot be parsed from."""

    def __init__(self, method: str, reason: str):
        self.method = method
        self.reason = reason

    def error(self) -> InvalidArgumentError:
        message = self.method.rsplit("/", 1)[-1] or "request"
        return InvalidArgumentError(
            f"the request is not a valid {message} message ({self.reason or 'cannot be parsed'})",
            field="request",
        )


def shutting_down() -> grpc.Status:
    return to_status(
        UnavailableError("the server is shutting down; retry (another replica)", retry_after_s=1.0)
    )


class CallGuard(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.draining = False
        #: Calls in flight: their tasks (grpc.aio runs each call, interceptors included, in one task).
        self._running: set[asyncio.Task] = set()
        #: Calls being ended by :meth:`abort_running`: they answer UNAVAILABLE.
        self._aborting: set[asyncio.Task] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    def begin_drain(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no call is in flight, or ``timeout_s``; True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while self._running:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._running), timeout=left)
        return True

    async def abort_running(self, timeout_s: float) -> int:
        """Ends every call still in flight with UNAVAILABLE; returns how many there were."""
        tasks = [task for task in self._running if not task.done()]
        for task in tasks:
            self._aborting.add(task)
            task.cancel()
        if tasks:
            log.warning(
                "the grace period ended with %d calls in flight: ending them with UNAVAILABLE", len(tasks)
            )
            await asyncio.wait(tasks, timeout=max(0.01, timeout_s))
        return len(tasks)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if self.draining and not method.startswith(EXEMPT_PREFIXES):
            return _replaced(handler, _refuse)
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._finished)
        return self._guarded(handler, method)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._aborting.discard(task)

    # -- the handler, wrapped -----------------------------------------------------------------

    def _guarded(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer

        def deserialize(data: bytes) -> Any:
            if parse is None:
                return data
            try:
                return parse(data)
            except Exception as exc:  # DecodeError, or a recursion limit inside the parser
                return Undecodable(method, " ".join(str(exc).split())[:200])

        async def checked(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await context.abort_with_status(to_status(request.error()))  # type: ignore[attr-defined]
                yield request

        async def on_cancel(context: grpc.aio.ServicerContext) -> None:
            if asyncio.current_task() in self._aborting:
                await context.abort_with_status(shutting_down())  # type: ignore[attr-defined]

        def unary_response(behavior: Callable, streaming_request: bool) -> Callable:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if streaming_request:
                    request = checked(request, context)
                elif isinstance(request, Undecodable):
                    await context.abort_with_status(to_status(request.error()))  # type: ignore[attr-defined]
                try:
                    result = behavior(request, context)
                    return await result if inspect.isawaitable(result) else result
                except asyncio.CancelledError:
                    await on_cancel(context)
                    raise

            return wrapped

        def streaming_response(behavior: Callable, streaming_request: bool) -> Callable:
            if not inspect.isasyncgenfunction(behavior):  # writes through context.write (health's Watch)
                return unary_response(behavior, streaming_request)

            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if streaming_request:
                    request = checked(request, context)
                elif isinstance(request, Undecodable):
                    await context.abort_with_status(to_status(request.error()))  # type: ignore[attr-defined]
                try:
                    async for response in behavior(request, context):
                        yield response
                except asyncio.CancelledError:
                    await on_cancel(context)
                    raise

            return wrapped

        codec = {"request_deserializer": deserialize, "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary, False), **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary, True), **codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                streaming_response(handler.unary_stream, False), **codec
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(streaming_response(handler.stream_stream, True), **codec)


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort_with_status(shutting_down())  # type: ignore[attr-defined]


def _replaced(handler: grpc.RpcMethodHandler, behavior: Callable) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that runs ``behavior`` (which aborts) instead."""

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await behavior(request, context)
        yield  # pragma: no cover - makes this an async generator

    # Requests are not parsed: a refused call's bytes may be anything.
    codec = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behavior, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **codec)
    return grpc.unary_unary_rpc_method_handler(behavior, **codec)
