"""Batching, overload and deadlines over real gRPC, with the model held by a gate.

Holding the model thread makes the queue fill deterministically, so what batches form,
what is refused and what expires does not depend on the machine's speed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from encoder_rpc import embed, serving, text

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.01)


def test_queued_callers_run_as_one_batch(start_encoder, gate_of) -> None:
    thread = start_encoder(max_batch_size=32, max_wait_ms=0)
    gate = gate_of(thread)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(9) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = pool.submit(embed, stub, [text("first")])
        assert gate.entered.wait(30)
        rest = [pool.submit(embed, stub, [text(f"caller {i}")]) for i in range(8)]
        wait_until(lambda: thread.server.core.batcher.queue_depth("text") == 8)
        gate.open()
        for future in [first, *rest]:
            assert future.result()[0].shape == (1, 64)
    assert gate.batches == [("text", 1), ("text", 8)]
    assert thread.server.metrics.snapshot().batch_sizes["text"] == {1: 1, 8: 1}


def test_max_batch_size_one_disables_batching(start_encoder, gate_of) -> None:
    thread = start_encoder(max_batch_size=1, max_wait_ms=50)
    gate = gate_of(thread)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(7) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = pool.submit(embed, stub, [text("first")])
        assert gate.entered.wait(30)
        rest = [pool.submit(embed, stub, [text(f"caller {i}"), text("again")]) for i in range(6)]
        wait_until(lambda: thread.server.core.batcher.queue_depth("text") == 12)
        gate.open()
        for future in [first, *rest]:
            future.result()
    assert gate.batches == [("text", 1)] * 13
    assert thread.server.metrics.snapshot().batch_sizes["text"] == {1: 13}


def test_a_full_queue_answers_resource_exhausted_at_once(start_encoder, gate_of) -> None:
    thread = start_encoder(max_batch_size=4, max_queue=4)
    gate = gate_of(thread)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(2) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = pool.submit(embed, stub, [text("first")])
        assert gate.entered.wait(30)
        queued = pool.submit(embed, stub, [text(c) for c in "abcd"])
        wait_until(lambda: thread.server.core.batcher.admitted == 4)
        with pytest.raises(grpc.RpcError) as caught:
            embed(stub, [text("one too many")])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = from_rpc_error(caught.value)
        assert error.retry_after_s is not None and error.retry_after_s > 0
        assert serving(channel)
        gate.open()
        assert queued.result()[0].shape == (4, 64)
        first.result()
        assert embed(stub, [text("room again")])[0].shape == (1, 64)
    assert thread.server.metrics.snapshot().rejected == 1


def test_a_call_larger_than_the_queue_is_invalid_argument(start_encoder) -> None:
    thread = start_encoder(max_queue=3)
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            embed(stub, [text(c) for c in "abcd"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(caught.value).field == "inputs"


def test_items_whose_deadline_passed_never_reach_the_model(start_encoder, gate_of) -> None:
    thread = start_encoder(max_batch_size=8)
    gate = gate_of(thread)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(2) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = pool.submit(embed, stub, [text("first")])
        assert gate.entered.wait(30)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Embed(
                encoder_pb2.EmbedRequest(inputs=[text("late"), text("later"), text("latest")]),
                timeout=0.3,
            )
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        gate.open()
        first.result()
        assert embed(stub, [text("after")])[0].shape == (1, 64)
    # Only "first" and "after" ran; the three late items were dropped before the model.
    assert gate.batches == [("text", 1), ("text", 1)]
    snapshot = thread.server.metrics.snapshot()
    assert sum(n for (kind, _), n in snapshot.dropped.items() if kind == "text") == 3
    assert thread.server.core.batcher.admitted == 0
