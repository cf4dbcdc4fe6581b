"""Load on the encoder from many client processes: closed loop (peak) or open loop (a set rate).

Each client process runs its own asyncio loop and gRPC channel, so the load generator is not
one GIL. All processes start measuring at the same moment (a barrier, then a short warm-up)
and measure for the same seconds; each call's latency is its own send-to-answer time.

    from gpu_load import Load, run_load
    result = run_load(Load(address, "images", per_call=64, processes=8, concurrency=4, seconds=10), images)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

#: Room for large batches of images in one call.
MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Load:
    #: One server, or several separated by commas (client process i sends to address i mod n).
    address: str
    #: "images" or "texts".
    kind: str
    per_call: int
    processes: int
    #: Closed loop: calls in flight per process.
    concurrency: int
    seconds: float
    #: Open loop: calls per second from all processes together (Poisson arrivals); None: closed loop.
    rate: float | None = None
    warm_s: float = 1.0

    def describe(self) -> str:
        what = f"{self.per_call} {self.kind[:-1] if self.per_call == 1 else self.kind} per call"
        if self.rate is None:
            return f"{what}, {self.processes} processes x {self.concurrency} calls in flight"
        return f"{what}, {self.rate:,.0f} calls/s open loop from {self.processes} processes"


@dataclass
class LoadResult:
    load: Load
    calls: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    #: Open loop: how late the clients sent their calls at worst (ms); large = clients overloaded.
    worst_send_lag_ms: float = 0.0

    @property
    def items(self) -> int:
        return self.calls * self.load.per_call

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def latency(self) -> str:
        return " / ".join(f"{self.percentile(q):.1f}" for q in (50, 95, 99))

    def as_dict(self) -> dict:
        return {
            "load": self.load.describe(),
            "calls": self.calls,
            "items_per_s": round(self.items_per_s, 1),
            "calls_per_s": round(self.calls_per_s, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "errors": dict(self.errors),
            "worst_send_lag_ms": round(self.worst_send_lag_ms, 1),
        }


def requests_for(kind: str, per_call: int, items: list, count: int = 16) -> list[bytes]:
    """``count`` serialized EmbedRequests of ``per_call`` inputs each, cycling through ``items``."""
    from clipsearch.v1 import encoder_pb2

    out, position = [], 0
    for _ in range(count):
        inputs = []
        for _ in range(per_call):
            item = items[position % len(items)]
            position += 1
            inputs.append(
                encoder_pb2.EmbedInput(image=item) if kind == "images" else encoder_pb2.EmbedInput(text=item)
            )
        out.append(encoder_pb2.EmbedRequest(inputs=inputs).SerializeToString())
    return out


def run_load(load: Load, items: list) -> LoadResult:
    """Runs ``load`` with requests made of ``items`` (image bytes or texts); merges the processes."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(load.processes + 1)
    results = context.Queue()
    requests = requests_for(load.kind, load.per_call, items)
    workers = [
        context.Process(target=_client, args=(load, index, requests, barrier, results), daemon=True)
        for index in range(load.processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)  # every client connected and ready
    parts = [results.get(timeout=load.seconds * 4 + load.warm_s + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    merged = LoadResult(load)
    for part in parts:
        if "crash" in part:
            raise RuntimeError(f"a load process failed: {part['crash']}")
        merged.calls += part["calls"]
        merged.seconds = max(merged.seconds, part["seconds"])
        merged.latencies_ms += part["latencies_ms"]
        merged.errors.update(part["errors"])
        merged.worst_send_lag_ms = max(merged.worst_send_lag_ms, part["lag_ms"])
    return merged


def _client(load: Load, index: int, requests: list[bytes], barrier, results) -> None:
    try:
        results.put(asyncio.run(_drive(load, index, requests, barrier)))
    except BaseException as exc:  # reported to the parent, which fails the run
        results.put({"crash": f"{type(exc).__name__}: {exc}"})


async def _drive(load: Load, index: int, requests: list[bytes], barrier) -> dict:
    import grpc

    options = [
        ("grpc.max_send_message_length", MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MESSAGE_BYTES),
    ]
    addresses = load.address.split(",")
    async with grpc.aio.insecure_channel(addresses[index % len(addresses)], options=options) as channel:
        # Requests go as they are (bytes); answers are not parsed: the clients stay light.
        embed = channel.unary_unary(
            "/clipsearch.v1.EncoderService/Embed",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )
        await channel.channel_ready()
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        latencies: list[float] = []  # of calls sent in [start, stop)
        completed = 0  # calls answered in [start, stop): the throughput
        errors: Counter = Counter()
        start = time.perf_counter() + load.warm_s
        stop = start + load.seconds
        rng = random.Random(index)

        async def call(request: bytes) -> None:
            nonlocal completed
            sent = time.perf_counter()
            try:
                await embed(request, timeout=60)
            except grpc.aio.AioRpcError as error:
                if start <= sent < stop:
                    errors[error.code().name] += 1
                return
            done = time.perf_counter()
            if start <= sent < stop:
                latencies.append((done - sent) * 1000)
            if start <= done < stop:
                completed += 1

        if load.rate is None:

            async def caller(offset: int) -> None:
                n = offset
                while time.perf_counter() < stop:
                    await call(requests[n % len(requests)])
                    n += load.concurrency

            await asyncio.gather(*(caller(i) for i in range(load.concurrency)))
            lag = 0.0
        else:
            rate = load.rate / load.processes
            due, n, lag, tasks = time.perf_counter(), 0, 0.0, set()
            while due < stop:
                due += rng.expovariate(rate)
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif due >= start:
                    lag = max(lag, -delay)
                task = asyncio.ensure_future(call(requests[n % len(requests)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(tasks, timeout=60)
        return {
            "calls": completed,
            "seconds": load.seconds,
            "latencies_ms": latencies,
            "errors": dict(errors),
            "lag_ms": lag * 1000,
        }
