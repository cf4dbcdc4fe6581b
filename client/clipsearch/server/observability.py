"""Per-call observability for every server: request ids, metrics, one log line per call.

Each server owns a Prometheus ``CollectorRegistry`` (several servers can share a
process in tests); the interceptor counts calls by method and status code and
times them. Logs can be one JSON object per line (``--log-format json``) and
carry the caller's ``x-request-id``.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from clipsearch.request_context import REQUEST_ID_HEADER, current_request_id, new_request_id

log = logging.getLogger("clipsearch.rpc")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "clipsearch_rpc_requests_total",
            "RPCs by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "clipsearch_rpc_latency_seconds",
            "RPC latency by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: RpcMetrics, access_log: str = "all"):
        self._metrics = metrics
        #: Only calls that did not end OK get a line (the metrics count every call either way):
        #: the line is ~10 % of a busy index server's Python time on cheap searches.
        self._errors_only = access_log == "errors"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        request_id = (
            next(
                (
                    v
                    for k, v in details.invocation_metadata or ()
                    if k == REQUEST_ID_HEADER and isinstance(v, str)
                ),
                None,
            )
            or new_request_id()
        )
        metrics = self._metrics
        errors_only = self._errors_only

        def finish(context: grpc.aio.ServicerContext, started: float, failed: BaseException | None) -> None:
            code = context.code()
            if code is None:
                code = (
                    grpc.StatusCode.UNKNOWN
                    if failed is not None and not _is_abort(failed)
                    else grpc.StatusCode.OK
                )
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            elapsed = time.perf_counter() - started
            metrics.requests.labels(method, name).inc()
            metrics.latency.labels(method).observe(elapsed)
            if not method.startswith("/grpc.health") and not (errors_only and name == "OK"):
                log.info(
                    "rpc", extra={"rpc_method": method, "code": name, "duration_ms": round(elapsed * 1000, 3)}
                )

        def wrap_unary_response(behavior):
            async def wrapped(request_or_iterator, context):
                token = current_request_id.set(request_id)
                started, failed = time.perf_counter(), None
                try:
                    result = behavior(request_or_iterator, context)
                    return await result if inspect.isawaitable(result) else result
                except BaseException as error:
                    failed = error
                    raise
                finally:
                    finish(context, started, failed)
                    _reset(token)

            return wrapped

        def wrap_streaming_response(behavior):
            if not inspect.isasyncgenfunction(behavior):
                # A coroutine that sends through `context.write` (grpc_health's Watch): awaited as is.
                return wrap_unary_response(behavior)

            async def wrapped(request_or_iterator, context):
                token = current_request_id.set(request_id)
                started, failed = time.perf_counter(), None
                try:
                    async for response in behavior(request_or_iterator, context):
                        yield response
                except BaseException as error:
                    failed = error
                    raise
                finally:
                    finish(context, started, failed)
                    _reset(token)

            return wrapped

        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap_unary_response(handler.unary_unary), **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap_unary_response(handler.stream_unary), **codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_streaming_response(handler.unary_stream), **codec
            )
        return grpc.stream_stream_rpc_method_handler(wrap_streaming_response(handler.stream_stream), **codec)


def _reset(token: contextvars.Token) -> None:
    """Restores the request id; a stream closed from another context (a cancelled call's
    generator, finalized by asyncio) has nothing to restore there."""
    try:
        current_request_id.reset(token)
    except ValueError:
        pass


def _is_abort(error: BaseException) -> bool:
    return type(error).__name__ == "AbortError"
