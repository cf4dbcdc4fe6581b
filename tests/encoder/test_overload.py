"""Batching, overload and deadlines over real gRPC; then the encoder offered 4x what it admits.

With the model held by a gate: holding the model thread makes the queue fill
deterministically, so what batches form, what is refused and what expires does not depend
on the machine's speed.

At 4x capacity (``test_encoder_at_4x_capacity``, a ``clipsearch serve encoder`` process):
the encoder admits ``--max-queue`` inputs; 4 x that many callers each send one-text calls
back to back for the run. Every call is either answered or refused with
RESOURCE_EXHAUSTED (nothing else); refusals come back faster than accepted calls (they
do not wait for the queue); accepted calls do not wait without bound; the server's RSS,
sampled through the run, stops growing. The bounds are relative or generous so that they
hold on a machine busy with other work; the figures themselves are reported (and kept in
docs/reliability.md and benchmarks), not asserted.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from encoder_rpc import embed, serving, text
from reliability_support import TINY_ENCODER, report, rss_mib, size, start_service, stop_process

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc

pytestmark = pytest.mark.reliability


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


# -- 4x capacity, as a process --------------------------------------------------------------

MAX_QUEUE = 16


def test_encoder_at_4x_capacity(tmp_path) -> None:
    duration_s = size(10.0, 120.0)
    callers = 4 * MAX_QUEUE
    process, address = start_service(
        "encoder",
        *TINY_ENCODER,
        "--max-queue",
        str(MAX_QUEUE),
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "5",
        "--threads",
        "1",
        "--query-cache-mib",  # the callers repeat their texts: the queue is what is tested
        "0",
        log_dir=tmp_path,
    )
    accepted: list[float] = []
    refused: list[float] = []
    other: list[str] = []
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)

            def caller(n: int) -> None:
                request = encoder_pb2.EmbedRequest(inputs=[encoder_pb2.EmbedInput(text=f"red shirt {n}")])
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        stub.Embed(request, timeout=30)
                        accepted.append(time.perf_counter() - started)
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            refused.append(time.perf_counter() - started)
                            time.sleep(0.01)  # a client that backs off a little, as the SDK does
                        else:
                            other.append(f"{exc.code().name}: {exc.details()}")

            threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
            began = time.monotonic()
            for thread in threads:
                thread.start()
            while time.monotonic() - began < duration_s:
                rss.append((time.monotonic() - began, rss_mib(process.pid)))
                time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a caller hung"
            health_ok = process.poll() is None
    finally:
        stop.set()
        stop_process(process)
    acc, ref = np.array(accepted), np.array(refused)
    half = [r for t, r in rss if t >= duration_s / 2]
    figures = {
        "duration_s": duration_s,
        "callers": callers,
        "max_queue": MAX_QUEUE,
        "accepted": len(acc),
        "refused": len(ref),
        "other_errors": len(other),
        "accepted_p50_ms": round(float(np.percentile(acc, 50)) * 1000, 1) if len(acc) else None,
        "accepted_p99_ms": round(float(np.percentile(acc, 99)) * 1000, 1) if len(acc) else None,
        "refused_p99_ms": round(float(np.percentile(ref, 99)) * 1000, 1) if len(ref) else None,
        "rss_start_mib": round(rss[0][1], 1),
        "rss_mid_mib": round(half[0], 1),
        "rss_end_mib": round(rss[-1][1], 1),
        "rss_max_mib": round(max(r for _, r in rss), 1),
    }
    report("encoder_overload_4x", **figures)
    assert health_ok, "the encoder died under overload"
    assert not other, other[:5]
    assert len(acc) > 0 and len(ref) > 0, "4x the queue must both be served and refused"
    # Behaviour, not the machine's speed: a refusal does not wait for the queue, so it is
    # faster than an accepted call (which waits for the queue and the model); no call waits
    # without bound (30 s is the callers' deadline; a loaded 2-core machine stays far below).
    assert np.median(ref) < np.median(acc), "refusals must not wait like accepted calls"
    assert np.percentile(ref, 99) < 5.0, "refusals must come back without waiting for the queue"
    assert np.percentile(acc, 99) < 20.0, "accepted calls must not wait without bound"
    # Plateau: the second half of the run grows by less than 10% (+16 MiB of allocator noise).
    assert max(half) <= half[0] * 1.10 + 16, f"RSS kept growing: {rss}"


# -- streams that never read, beside interactive callers (issue item 3) -------------------------


def _model_items(metrics_port: int) -> float:
    """Inputs the model has run (the batch-size histogram's sum, every kind)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("clipsearch_encoder_batch_size_sum")
    )


def test_streams_that_never_read_do_not_crowd_out_interactive_callers(tmp_path) -> None:
    """The issue: 20 EmbedStreams whose callers never read kept the queue full and took 72-84% of
    the work; 200 unary callers fell from ~500 to ~120-230 OK/s. Stream work is bulk work now: it
    gets the room and the model time interactive calls leave. Measured as the unary callers'
    throughput with the 20 streams open against without them, on the same machine in the same
    minute (a ratio, so a busy machine slows both sides alike).

    What a stream that never reads still gets done is bounded by HTTP/2 flow control: gRPC-core
    clients (Python's included) grow a stream's receive window to a few MiB whether or not the
    caller reads, and no server can see past it (docs/reliability.md)."""
    from reliability_support import crash_machinery

    metrics_port = crash_machinery().free_port()
    process, address = start_service(
        "encoder",
        *TINY_ENCODER,
        "--threads",
        "1",
        "--max-queue",
        "256",
        "--max-batch-size",
        "16",
        "--metrics-port",
        str(metrics_port),
        "--query-cache-mib",  # the callers repeat their texts: the model's share is what is tested
        "0",
        log_dir=tmp_path,
    )
    duration_s = size(6.0, 30.0)
    callers = 48

    def unary_phase() -> tuple[int, int]:
        ok, refused = [0], [0]
        stop = threading.Event()

        def caller(n: int) -> None:
            request = encoder_pb2.EmbedRequest(inputs=[encoder_pb2.EmbedInput(text=f"red shirt {n}")])
            while not stop.is_set():
                try:
                    stub.Embed(request, timeout=30)
                    ok[0] += 1
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    refused[0] += 1
                    time.sleep(0.01)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
        for thread in threads:
            thread.start()
        time.sleep(duration_s)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        return ok[0], refused[0]

    def never_read(n: int):
        def chunks():
            for c in range(1_000_000):
                yield encoder_pb2.EmbedStreamRequest(
                    chunk_id=str(c),
                    inputs=[encoder_pb2.EmbedInput(text=f"bulk {n} {c} {j}") for j in range(16)],
                )

        channel = grpc.insecure_channel(address)  # a connection of its own, as separate callers have
        return channel, encoder_pb2_grpc.EncoderServiceStub(channel).EmbedStream(chunks(), timeout=600)

    streams = []
    try:
        with grpc.insecure_channel(address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            alone_ok, _ = unary_phase()
            streams = [never_read(n) for n in range(20)]
            time.sleep(1.0)
            before = _model_items(metrics_port)
            beside_ok, beside_refused = unary_phase()
            model_items = _model_items(metrics_port) - before
    finally:
        for stream_channel, call in streams:
            call.cancel()
            stream_channel.close()
        stop_process(process)
    figures = {
        "duration_s": duration_s,
        "unary_callers": callers,
        "streams": 20,
        "unary_ok_per_s_alone": round(alone_ok / duration_s, 1),
        "unary_ok_per_s_beside_streams": round(beside_ok / duration_s, 1),
        "unary_refused_beside_streams": beside_refused,
        "stream_share_of_model_work": round(1 - beside_ok / model_items, 3) if model_items else None,
    }
    report("encoder_streams_never_read", **figures)
    # Streams hold at most half the queue: an interactive call always finds room (main: 1000 of
    # the unary calls were refused in these 6 s, and the unary throughput fell to 7%).
    assert beside_refused == 0, figures
    # Their work runs where interactive calls leave the model idle, yet their CPU competes on a
    # 2-core machine, so how much unary throughput remains depends on the machine's load
    # (0.43 of alone at load ~10, 0.08 at ~20): reported above, not asserted; progress is.
    assert alone_ok > 0 and beside_ok > 0, figures
