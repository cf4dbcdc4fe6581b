"""The encoder offered 4x what it admits: excess refused at once, accepted calls stay fast, RSS flat.

The encoder admits ``--max-queue`` inputs; 4 x that many callers each send one-text calls
back to back for the run. Every call is either answered or refused with
RESOURCE_EXHAUSTED (nothing else); refusals come back quickly; the accepted calls'
latency is bounded by the queue; the server's RSS, sampled through the run, stops growing.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from reliability_support import TINY_ENCODER, report, rss_mib, size, start_service, stop_process

from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc

pytestmark = pytest.mark.reliability

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
    assert np.percentile(ref, 99) < 0.5, "refusals must come back well under a second"
    assert np.percentile(acc, 99) < 10.0, "accepted calls must not wait without bound"
    # Plateau: the second half of the run grows by less than 10% (+16 MiB of allocator noise).
    assert max(half) <= half[0] * 1.10 + 16, f"RSS kept growing: {rss}"
