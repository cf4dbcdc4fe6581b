"""Closed-loop load, the same code for every side (standard library only: it runs in every venv).

``callers`` threads each send one call, wait for its answer and send the next. A warm-up
comes first (connections, first batches), then the measured window. Throughput is the
work done inside the window (each call counted for the part of its lifetime inside it,
see ``share``) over the window's length; latencies are those of the calls that finish
inside it. No call starts after the window; those still in flight are waited for, so the
next measurement starts on an idle server. ``until``, when given, also closes the window once
it is set: for runs whose length other work decides (``seconds`` is then an upper bound).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

#: make_call(thread_index) -> call(sequence_number); built in the caller's thread.
CallFactory = Callable[[int], Callable[[int], object]]


def closed_loop(
    make_call: CallFactory,
    callers: int,
    seconds: float,
    warmup_s: float,
    until: threading.Event | None = None,
) -> dict:
    calls: list[list[tuple[float, float]]] = [[] for _ in range(callers)]  # (sent, done) per thread
    errors: list[str] = []
    window: dict[str, float] = {}

    def open_window() -> None:  # run once, when every caller has its client, before any call
        now = time.perf_counter()
        window.update(start=now + warmup_s, stop=now + warmup_s + seconds)

    ready = threading.Barrier(callers, action=open_window)

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
        mine, number, stop = calls[index], index, window["stop"]
        while (sent := time.perf_counter()) < stop and not (until is not None and until.is_set()):
            try:
                call(number)
            except Exception:
                errors.append(traceback.format_exc())
                return
            mine.append((sent, time.perf_counter()))
            number += callers

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    start, stop = window.get("start", 0.0), window.get("stop", 0.0)
    every = [c for mine in calls for c in mine]
    return {
        "calls": sum(1 for sent, done in every if start <= done < stop),
        "work": sum(share(sent, done, start, stop) for sent, done in every),
        "all_calls": len(every),  # warm-up and drain included: what CPU time is divided by
        "seconds": seconds,
        "latencies_ms": [(done - sent) * 1000 for sent, done in every if start <= done < stop],
        "errors": errors[:3],
    }


def share(sent: float, done: float, start: float, stop: float) -> float:
    """The part of one call's lifetime inside the window (1 for a call wholly inside).

    Summed over calls and divided by the window, it is the throughput without the
    quantization of counting whole calls: with 32 callers and a model that answers a
    batch of 16 every 2 s, a 6 s window holds 2 or 3 batches' completions depending on
    its phase, but always 3 batches' worth of work.
    """
    overlap = min(done, stop) - max(sent, start)
    return max(overlap, 0.0) / (done - sent) if done > sent else float(start <= done < stop)
