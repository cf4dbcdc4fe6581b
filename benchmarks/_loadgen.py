"""Closed-loop load, the same code for every side (standard library only: it runs in every venv).

``callers`` threads each send one call, wait for its answer and send the next. A warm-up
comes first (connections, first batches); then only calls that *finish* inside the
measured window count, and the window's length divides them. Calls still in flight when
the window ends are waited for and dropped, so every measurement starts on an idle server.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

#: make_call(thread_index) -> call(sequence_number); built in the caller's thread.
CallFactory = Callable[[int], Callable[[int], object]]


def closed_loop(make_call: CallFactory, callers: int, seconds: float, warmup_s: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(callers)]
    errors: list[str] = []
    ready = threading.Barrier(callers + 1)
    window: dict[str, float] = {}

    def run(index: int) -> None:
        try:
            call = make_call(index)
        except BaseException:
            errors.append(traceback.format_exc())
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        mine, number = latencies[index], index
        while True:
            sent = time.perf_counter()
            if sent >= window["stop"]:
                return
            try:
                call(number)
            except Exception:
                errors.append(traceback.format_exc())
                return
            done = time.perf_counter()
            if window["start"] <= done < window["stop"]:
                mine.append((done - sent) * 1000)
            number += callers

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()  # every caller has its client: start the clock now, not before
    except threading.BrokenBarrierError:
        pass
    now = time.perf_counter()
    window.update(start=now + warmup_s, stop=now + warmup_s + seconds)
    for thread in threads:
        thread.join()
    merged = [ms for mine in latencies for ms in mine]
    return {"calls": len(merged), "seconds": seconds, "latencies_ms": merged, "errors": errors[:3]}
