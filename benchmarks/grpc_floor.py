#!/usr/bin/env python
"""What a Python gRPC server can answer on this machine when it does nothing: the floor
under every per-call figure of the servers (docs/benchmarks.md, "Per-call cost").

Three servers, each its own process, driven by closed-loop client threads in this process
(one blocking stub call at a time per thread, like the SDK's), interleaved over rounds:

* ``aio echo``: ``grpc.aio`` answering each call with its request bytes (no protobuf, no
  interceptor, no work);
* ``sync echo``: the same on grpc's thread-pool server (``--sync-threads`` workers);
* ``clipsearch health``: ``clipsearch serve index`` (empty) answering ``grpc.health.v1``
  Check through its interceptors (request id, metrics, call guard; no log line, no thread hop).

Printed: calls/s, p50, and the server's CPU ms per call (its /proc stat). Usage::

    .venv/bin/python benchmarks/grpc_floor.py                    # 3 rounds of 5 s, 1 and 8 clients
    .venv/bin/python benchmarks/grpc_floor.py --work-ms 0.3      # echo servers hold the GIL 0.3 ms a call
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from _peer_procs import group_cpu_s
from _servers import free_port

METHOD = "/floor.Echo/Echo"


def _burn(seconds: float) -> None:
    """Holds the GIL for ``seconds`` (the Python work a real handler would do)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _handlers(work_s: float, asynchronous: bool) -> grpc.GenericRpcHandler:
    def echo(request: bytes, context) -> bytes:
        _burn(work_s)
        return request

    async def echo_async(request: bytes, context) -> bytes:
        _burn(work_s)
        return request

    handler = grpc.unary_unary_rpc_method_handler(echo_async if asynchronous else echo)
    return grpc.method_handlers_generic_handler("floor.Echo", {"Echo": handler})


def serve_echo(kind: str, port: int, work_s: float, sync_threads: int) -> None:
    """Runs in the server subprocess until killed."""
    if kind == "aio":

        async def main() -> None:
            server = grpc.aio.server()
            server.add_generic_rpc_handlers([_handlers(work_s, True)])
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        asyncio.run(main())
        return
    server = grpc.server(futures.ThreadPoolExecutor(sync_threads))
    server.add_generic_rpc_handlers([_handlers(work_s, False)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def start_side(side: str, args: argparse.Namespace, scratch: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if side == "clipsearch health":
        command = [
            sys.executable, "-m", "clipsearch.apps.cli", "serve", "index", "--port", str(port),
            "--data-dir", str(scratch / f"index-{port}"), "--log-level", "WARNING",
        ]  # fmt: skip
    else:
        kind = "aio" if side == "aio echo" else "sync"
        command = [
            sys.executable, __file__, "--serve", kind, "--port", str(port),
            "--work-ms", str(args.work_ms), "--sync-threads", str(args.sync_threads),
        ]  # fmt: skip
    process = subprocess.Popen(  # its own process group: group_cpu_s counts its CPU
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    address = f"127.0.0.1:{port}"
    from clipsearch.health import wait_until_serving

    if side == "clipsearch health":
        wait_until_serving(address, timeout_s=120)
    else:
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=60)
    return process, address


def drive(side: str, address: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    """Closed loop: each thread its own channel, one call at a time; returns (calls, latencies)."""
    latencies: list[float] = []
    counts = [0] * clients
    end = time.perf_counter() + seconds

    def loop(i: int) -> None:
        channel = grpc.insecure_channel(address)
        if side == "clipsearch health":
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            stub = health_pb2_grpc.HealthStub(channel)

            def call() -> None:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        else:
            echo = channel.unary_unary(METHOD)
            payload = b"x" * 64

            def call() -> None:
                echo(payload, timeout=10)

        call()
        mine = []
        while (start := time.perf_counter()) < end:
            call()
            mine.append(time.perf_counter() - start)
        counts[i] = len(mine)
        latencies.extend(mine)
        channel.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8", help="comma-separated client thread counts")
    parser.add_argument("--work-ms", type=float, default=0.0, help="echo servers: GIL-holding work a call")
    parser.add_argument("--sync-threads", type=int, default=8, help="sync echo: pool threads")
    parser.add_argument("--serve", choices=("aio", "sync"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_echo(args.serve, args.port, args.work_ms / 1000, args.sync_threads)
        return 0
    sides = ["aio echo", "sync echo", "clipsearch health"]
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; grpcio {grpc.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, args.rounds + 1):
            for side in sides:
                process, address = start_side(side, args, Path(scratch))
                try:
                    for clients in [int(c) for c in args.clients.split(",")]:
                        drive(side, address, clients, 0.5)  # warm-up
                        before = group_cpu_s(process.pid)
                        calls, latencies = drive(side, address, clients, args.seconds)
                        cpu = group_cpu_s(process.pid) - before
                        row = (calls / args.seconds, statistics.median(latencies) * 1000, cpu * 1000 / calls)
                        results.setdefault((side, clients), []).append(row)
                        print(
                            f"round {round_} {side:18s} {clients} client(s): {row[0]:8.0f} calls/s  "
                            f"p50 {row[1]:.2f} ms  server CPU {row[2]:.3f} ms a call",
                            flush=True,
                        )
                finally:
                    process.kill()
                    process.wait()
    print(f"\nload average after: {os.getloadavg()}; work per echo call {args.work_ms} ms\n")
    print("| server | clients | calls/s (median) | every round | p50 ms | server CPU ms a call |")
    print("|---|---:|---:|---|---:|---:|")
    for (side, clients), rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        every = " / ".join(f"{r[0]:,.0f}" for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[2] for r in rows)
        print(f"| {side} | {clients} | {rate:,.0f} | {every} | {p50:.2f} | {cpu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
