"""Start and stop: NOT_SERVING until the model is loaded, calls in flight finish on stop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from encoder_rpc import SERVICE, TINY, ModelGate, embed, serving, text
from harness import ServerThread

from clipsearch.v1 import encoder_pb2_grpc
from encoder_service.server import EncoderServer
from encoder_service.settings import EncoderSettings

pytestmark = pytest.mark.functional


def test_not_serving_and_unavailable_until_the_model_is_loaded() -> None:
    async def listening_only() -> EncoderServer:
        server = EncoderServer(EncoderSettings(**TINY))
        await server.start()
        return server

    thread = ServerThread(listening_only, name="encoder-loading").start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            assert not serving(channel) and not serving(channel, SERVICE)
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                embed(stub, [text("too early")])
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            thread.run(thread.server.load())
            assert serving(channel) and serving(channel, SERVICE)
            assert embed(stub, [text("now")])[0].shape == (1, 64)
    finally:
        thread.stop()


def test_stopping_lets_calls_in_flight_finish_and_turns_not_serving(start_encoder) -> None:
    thread = start_encoder(grace_s=30)
    gate = ModelGate(thread)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(2) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        in_flight = pool.submit(embed, stub, [text("in flight")])
        assert gate.entered.wait(30)
        stopping = pool.submit(thread.run, thread.server.stop(), 60)
        try:
            with grpc.insecure_channel(thread.address) as probe:
                # Health turns NOT_SERVING at once, or the stopping server already refuses
                # new calls (UNAVAILABLE, or CANCELLED when the call raced the shutdown).
                try:
                    assert not serving(probe)
                except grpc.RpcError as error:
                    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        finally:
            gate.open()
        assert in_flight.result()[0].shape == (1, 64)
        stopping.result()
    assert thread.server.core is not None
    with pytest.raises(Exception, match="shutting down"):
        thread.server.core.batcher.admit(1)
