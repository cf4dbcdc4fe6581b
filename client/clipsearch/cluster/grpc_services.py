"""The functions Serve's gRPC proxy calls to learn our services (``grpc_servicer_functions``).

Serve calls each with a mock servicer and its own server, then routes every method to
the ingress method of the same name. The generated ``add_…_to_server`` of current
grpcio-tools also calls ``add_registered_method_handlers``, which Serve 2.58's proxy
does not route; these functions hand over the generic handlers only. The encoder's use
the standalone server's lenient request parsers (bad UTF-8 -> INVALID_ARGUMENT).
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from clipsearch.v1 import index_pb2_grpc
from encoder_service import servicer as encoder_servicer


class _GenericOnly:
    """A server façade that keeps generic handlers and drops registered-method ones.

    ``raw_requests`` leaves request bytes unparsed: the proxy pickles what it parsed to the
    ingress, and the encoder's lenient message classes (made at run time) do not pickle.
    The ingress parses them (see ingress.py).
    """

    def __init__(self, server: Any, *, raw_requests: bool = False):
        self._server = server
        self._raw = raw_requests

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        if self._raw:
            for handler in handlers:
                handler._method_handlers = {
                    name: method._replace(request_deserializer=None)
                    for name, method in handler._method_handlers.items()
                }
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        """Dropped: the generic handlers above already serve every method."""


def add_encoder_service(servicer: Any, server: grpc.Server) -> None:
    encoder_servicer.add_to_server(servicer, _GenericOnly(server, raw_requests=True))  # type: ignore[arg-type]


def add_index_service(servicer: Any, server: grpc.Server) -> None:
    index_pb2_grpc.add_IndexServiceServicer_to_server(servicer, _GenericOnly(server))  # type: ignore[arg-type]


def add_health_service(servicer: Any, server: grpc.Server) -> None:
    """``grpc.health.v1.Health/Check`` reaches the ingress too (probes, ``clipsearch health``)."""
    health_pb2_grpc.add_HealthServicer_to_server(servicer, _GenericOnly(server))  # type: ignore[arg-type]


SERVICER_FUNCTIONS = [
    f"{__name__}:add_encoder_service",
    f"{__name__}:add_index_service",
    f"{__name__}:add_health_service",
]
