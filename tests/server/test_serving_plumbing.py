"""The shared server plumbing, over a real loopback server with a stand-in servicer.

Error details must survive the wire in both directions, health must follow the
server's life, reflection must list the services, and a graceful stop must let
in-flight calls finish.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from harness import ServerThread
from standin import StandInEncoder

from clipsearch import EncoderClient
from clipsearch.errors import InternalError, InvalidArgumentError, ResourceExhaustedError, StatusCode
from clipsearch.health import check_health
from clipsearch.server.server import ManagedServer, ServerOptions, ServiceBinding
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc

pytestmark = pytest.mark.functional


def _factory(serving: bool = True):
    async def start() -> ManagedServer:
        binding = ServiceBinding(
            encoder_pb2_grpc.add_EncoderServiceServicer_to_server,
            StandInEncoder(),
            "clipsearch.v1.EncoderService",
        )
        server = ManagedServer(ServerOptions(port=0, grace_s=5.0), [binding])
        await server.start()
        if serving:
            await server.set_serving()
        return server

    return start


@pytest.fixture(scope="module")
def server():
    with ServerThread(_factory(), name="stand-in") as running:
        yield running


def test_success_and_error_details_round_trip(server) -> None:
    with EncoderClient(server.address) as client:
        vectors = client.embed_texts(["hello"])
        assert vectors.shape == (1, 2) and client.last_fingerprint == "fp"
        with pytest.raises(InvalidArgumentError) as bad:
            client.embed_texts(["ok", ""][1:])
        assert bad.value.field == "inputs[0].text" and bad.value.code is StatusCode.INVALID_ARGUMENT
        with pytest.raises(ResourceExhaustedError) as busy:
            client.embed_texts(["busy"])
        assert busy.value.retry_after_s == pytest.approx(0.5)


def test_unexpected_errors_are_internal_without_details(server) -> None:
    with EncoderClient(server.address) as client, pytest.raises(InternalError) as caught:
        client.embed_texts(["crash"])
    assert "secret" not in caught.value.message


def test_stream_errors_are_mapped(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        chunks = [
            encoder_pb2.EmbedStreamRequest(chunk_id="a"),
            encoder_pb2.EmbedStreamRequest(chunk_id="bad"),
        ]
        responses = stub.EmbedStream(iter(chunks), timeout=10)
        assert next(responses).chunk_id == "a"
        with pytest.raises(grpc.RpcError) as caught:
            next(responses)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_reflection_lists_services(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"clipsearch.v1.EncoderService", "grpc.health.v1.Health"} <= services


def test_health_follows_readiness_and_shutdown() -> None:
    running = ServerThread(_factory(serving=False), name="not-ready").start()
    try:
        assert check_health(running.address) == "NOT_SERVING"
        running.run(running.server.set_serving())
        assert check_health(running.address) == "SERVING"
        assert check_health(running.address, service="clipsearch.v1.EncoderService") == "SERVING"
    finally:
        running.stop()
    assert check_health(running.address, timeout_s=5) == "UNREACHABLE"


def test_graceful_stop_lets_in_flight_calls_finish() -> None:
    running = ServerThread(_factory(), name="draining").start()
    outcome: dict[str, object] = {}

    def slow_call() -> None:
        with EncoderClient(running.address) as client:
            outcome["vectors"] = client.embed_texts(["slow"])

    StandInEncoder.slow_entered.clear()
    caller = threading.Thread(target=slow_call)
    caller.start()
    assert StandInEncoder.slow_entered.wait(30)  # the call is in flight
    stopper = threading.Thread(target=running.stop, kwargs={"grace_s": 5.0})
    stopper.start()
    # Draining: no longer SERVING (as soon as the stop begins), yet the in-flight call completes.
    deadline = time.monotonic() + 10
    while check_health(running.address, timeout_s=5) == "SERVING" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert check_health(running.address, timeout_s=5) in ("NOT_SERVING", "UNREACHABLE")
    caller.join(10)
    stopper.join(10)
    assert outcome["vectors"].shape == (1, 2)


def test_health_status_names_match_the_proto() -> None:
    assert health_pb2.HealthCheckResponse.ServingStatus.Name(1) == "SERVING"
