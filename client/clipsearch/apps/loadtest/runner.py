"""Drives the load: closed loop (fixed concurrency) or open loop (fixed arrival rate).

Every request embeds its query and searches, timed per stage. The run is always
bounded: by --duration, or by --requests with --max-duration as a backstop, and
it only talks to the addresses it was given.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from clipsearch.aio import SearchClient
from clipsearch.apps.loadtest.stats import Recorder, Sample
from clipsearch.apps.loadtest.workload import Workload
from clipsearch.errors import ClipsearchError
from clipsearch.query import Query, query_words, search_mode
from clipsearch.types import Hit


@dataclass(frozen=True)
class LoadSettings:
    collection: str
    k: int = 10
    #: "closed" (``concurrency`` workers back to back) or "open" (``rate`` arrivals per second).
    mode: str = "closed"
    concurrency: int = 8
    rate: float = 10.0
    duration_s: float | None = 10.0
    requests: int | None = None
    warmup_s: float = 2.0
    max_duration_s: float = 600.0
    max_in_flight: int = 1000
    timeout_s: float = 30.0
    #: Compare each hit list with this (exact) collection's, for recall@k.
    exact_collection: str | None = None


async def run_load(
    client: SearchClient, workload: Workload, settings: LoadSettings
) -> tuple[Recorder, float]:
    """Returns the samples of the measured phase (warm-up excluded) and its length in seconds."""
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    measure_from = begin + settings.warmup_s
    hard_stop = measure_from + (settings.duration_s or settings.max_duration_s)
    hard_stop = min(hard_stop, measure_from + settings.max_duration_s)

    def measured_enough() -> bool:
        if loop.time() >= hard_stop:
            return True
        return settings.requests is not None and len(recorder.samples) >= settings.requests

    async def one(scheduled: float) -> None:
        kind, query, mode, repeat = workload.next_request()
        status, encode_s, search_s = "OK", 0.0, 0.0
        start = loop.time()
        try:
            vector, hits, encode_s = await _search(client, settings, query, mode)
            done = loop.time()
            search_s = done - start - encode_s
            if settings.exact_collection and scheduled >= measure_from and vector is not None:
                exact = await client.index.search(settings.exact_collection, vector, k=settings.k)
                expected = {hit.id for hit in exact}
                if expected:
                    recorder.recall.append(len(expected & {hit.id for hit in hits}) / len(expected))
        except ClipsearchError as error:
            status, done = error.code.name, loop.time()
        if scheduled >= measure_from and not measured_enough():
            recorder.add(
                Sample(kind, scheduled - measure_from, done - scheduled, encode_s, search_s, status, repeat)
            )

    if settings.mode == "closed":
        await _closed_loop(one, settings.concurrency, loop, measured_enough)
    else:
        await _open_loop(one, settings, loop, measured_enough, recorder)
    measured = min(loop.time(), hard_stop) - measure_from
    return recorder, max(measured, 1e-9)


async def _search(
    client: SearchClient, settings: LoadSettings, query: Query, mode: str
) -> tuple[np.ndarray | None, list[Hit], float]:
    """(query vector or None, hits, seconds encoding): the SDK's path for ``mode``, with the
    encoder and the index timed apart (keyword mode calls no encoder)."""
    loop = asyncio.get_running_loop()
    words = query_words(query)
    mode = search_mode(mode, words)
    texts = [words] if mode != "vector" else []
    if mode == "keyword":
        [hits] = await client.index.search_batch(
            settings.collection, None, k=settings.k, mode=mode, texts=texts, timeout_s=settings.timeout_s
        )
        return None, hits, 0.0
    start = loop.time()
    vector = await client.embed_query(query, timeout_s=settings.timeout_s)
    encoded = loop.time() - start
    hits = await client.index.search(
        settings.collection,
        vector,
        k=settings.k,
        model_fingerprint=client.encoder.last_fingerprint,
        mode=mode,
        texts=texts,
        timeout_s=settings.timeout_s,
    )
    return vector, hits, encoded


async def _closed_loop(one, concurrency: int, loop, measured_enough) -> None:
    async def worker() -> None:
        while not measured_enough():
            await one(loop.time())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _open_loop(one, settings: LoadSettings, loop, measured_enough, recorder: Recorder) -> None:
    interval = 1.0 / settings.rate
    next_at = loop.time()
    in_flight: set[asyncio.Task] = set()
    while not measured_enough():
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= settings.max_in_flight:
            recorder.dropped += 1
        else:
            task = asyncio.create_task(one(next_at))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        next_at += interval
    if in_flight:
        await asyncio.wait(in_flight, timeout=settings.timeout_s)
