"""Client side of gRPC health checking (for probes, ``clipsearch health`` and the demo)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_health(address: str, *, service: str = "", timeout_s: float = 5.0) -> str:
    """The service's status name (SERVING, NOT_SERVING, ...) or UNREACHABLE."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as error:
            return "UNREACHABLE" if error.code() == grpc.StatusCode.UNAVAILABLE else error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def wait_until_serving(address: str, *, timeout_s: float = 120.0, poll_s: float = 0.25) -> None:
    """Blocks until the server says SERVING; TimeoutError naming the last status otherwise."""
    deadline = time.monotonic() + timeout_s
    status = "UNREACHABLE"
    while time.monotonic() < deadline:
        status = check_health(address, timeout_s=min(2.0, timeout_s))
        if status == "SERVING":
            return
        time.sleep(poll_s)
    raise TimeoutError(f"{address} not SERVING after {timeout_s:.0f}s (last status: {status})")
