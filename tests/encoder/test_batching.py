"""The dynamic batcher on its own, with a runner the tests control (no model, no gRPC)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from clipsearch.errors import DeadlineExceededError, InternalError, ResourceExhaustedError, UnavailableError
from encoder_service.batching import BatchPolicy, DynamicBatcher
from encoder_service.metrics import EncoderMetrics

pytestmark = pytest.mark.unit


class Runner:
    """Records every batch; the first ``hold`` batches wait until released."""

    def __init__(self, hold: int = 0, fail_on: object = None):
        self.batches: list[tuple[str, list]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.fail_on = fail_on

    def __call__(self, kind: str, payloads: list) -> list:
        self.batches.append((kind, list(payloads)))
        self.started.set()
        if len(self.batches) <= self.hold and not self.release.wait(timeout=30):
            raise RuntimeError("never released")
        if self.fail_on in payloads:
            raise ValueError("boom")
        return [(kind, p) for p in payloads]


async def started(runner: Runner) -> None:
    await asyncio.to_thread(runner.started.wait, 30)


def make(runner: Runner, **policy) -> tuple[DynamicBatcher, EncoderMetrics]:
    metrics = EncoderMetrics()
    batcher = DynamicBatcher(runner, BatchPolicy(**{"max_wait_ms": 0.0, **policy}), observer=metrics)
    batcher.start()
    return batcher, metrics


async def call(batcher: DynamicBatcher, kind: str, payloads: list, deadline: float | None = None) -> list:
    with batcher.admit(len(payloads)) as admission:
        return await batcher.submit(kind, payloads, admission, deadline=deadline)


def test_concurrent_callers_share_batches_and_get_their_own_results_in_order() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, metrics = make(runner, max_batch_size=64)
        first = asyncio.ensure_future(call(batcher, "text", ["first"]))
        await started(runner)  # the model is busy: everything below queues up
        callers = [
            asyncio.ensure_future(call(batcher, "text", [f"{i}-{j}" for j in range(3)])) for i in range(10)
        ]
        await asyncio.sleep(0.05)
        runner.release.set()
        results = await asyncio.gather(*callers)
        assert await first == [("text", "first")]
        for i, result in enumerate(results):
            assert result == [("text", f"{i}-{j}") for j in range(3)]
        assert [len(p) for _, p in runner.batches] == [1, 30]
        snap = metrics.snapshot()
        assert snap.batch_sizes["text"] == {1: 1, 30: 1}
        assert snap.batches["text"] == 2
        batcher.close()

    asyncio.run(scenario())


def test_batches_never_exceed_max_size_and_split_one_callers_items_in_order() -> None:
    async def scenario() -> None:
        runner = Runner()
        batcher, _ = make(runner, max_batch_size=4)
        result = await call(batcher, "image", list(range(10)))
        assert result == [("image", i) for i in range(10)]
        assert [len(p) for _, p in runner.batches] == [4, 4, 2]
        batcher.close()

    asyncio.run(scenario())


def test_max_batch_size_one_runs_every_item_alone() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, metrics = make(runner, max_batch_size=1, max_wait_ms=50)
        first = asyncio.ensure_future(call(batcher, "text", ["a"]))
        await started(runner)
        rest = [asyncio.ensure_future(call(batcher, "text", [str(i), str(i)])) for i in range(5)]
        await asyncio.sleep(0.02)
        runner.release.set()
        await asyncio.gather(first, *rest)
        assert {len(p) for _, p in runner.batches} == {1}
        assert metrics.snapshot().batch_sizes["text"] == {1: 11}
        batcher.close()

    asyncio.run(scenario())


def test_text_and_images_are_never_mixed_in_a_batch() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=32)
        first = asyncio.ensure_future(call(batcher, "text", ["x"]))
        await started(runner)
        calls = [asyncio.ensure_future(call(batcher, kind, [kind] * 2)) for kind in ("text", "image") * 4]
        await asyncio.sleep(0.02)
        runner.release.set()
        await asyncio.gather(first, *calls)
        for kind, payloads in runner.batches[1:]:
            assert set(payloads) == {kind}
        assert sorted(len(p) for _, p in runner.batches[1:]) == [8, 8]
        batcher.close()

    asyncio.run(scenario())


def test_a_partial_batch_waits_for_inputs_still_being_prepared() -> None:
    async def scenario() -> None:
        runner = Runner()
        batcher, _ = make(runner, max_batch_size=8, max_wait_ms=30_000)
        # Two inputs admitted (as if being decoded); the first is ready before the second.
        with batcher.admit(2) as admission:
            first = asyncio.ensure_future(batcher.submit("text", ["a"], admission))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(batcher.submit("text", ["b"], admission))
            await asyncio.gather(first, second)
        assert [p for _, p in runner.batches] == [["a", "b"]]
        batcher.close()

    asyncio.run(scenario())


def test_a_partial_batch_stops_waiting_when_the_rest_fails_to_prepare() -> None:
    async def scenario() -> None:
        runner = Runner()
        batcher, _ = make(runner, max_batch_size=8, max_wait_ms=60_000)
        with batcher.admit(2) as admission:
            first = asyncio.ensure_future(batcher.submit("text", ["a"], admission))
            await asyncio.sleep(0.05)
        # Leaving the block released the second place (it "failed to decode"): no more waiting.
        assert await asyncio.wait_for(first, timeout=20) == [("text", "a")]
        batcher.close()

    asyncio.run(scenario())


def test_a_lone_caller_is_not_held_for_company_that_is_not_coming() -> None:
    async def scenario() -> None:
        runner = Runner()
        batcher, _ = make(runner, max_batch_size=8, max_wait_ms=60_000)
        assert await asyncio.wait_for(call(batcher, "image", ["alone"]), timeout=20) == [("image", "alone")]
        batcher.close()

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, metrics = make(runner, max_batch_size=2, max_queue=4)
        first = asyncio.ensure_future(call(batcher, "text", ["a"]))
        await started(runner)  # "a" left the queue for the model; 4 places are free
        queued = asyncio.ensure_future(call(batcher, "text", ["b", "c", "d"]))
        await asyncio.sleep(0)
        with pytest.raises(ResourceExhaustedError) as caught:
            batcher.admit(2)
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 0
        batcher.admit(1).release()  # exactly one place is left
        assert metrics.snapshot().rejected == 2
        runner.release.set()
        assert await queued == [("text", x) for x in "bcd"]
        await first
        batcher.admit(4).release()  # all room is back
        batcher.close()

    asyncio.run(scenario())


def test_items_past_their_deadline_never_reach_the_model() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, metrics = make(runner, max_batch_size=8)
        first = asyncio.ensure_future(call(batcher, "text", ["busy"]))
        await started(runner)
        late = asyncio.ensure_future(
            call(batcher, "text", ["late1", "late2"], deadline=time.monotonic() + 0.05)
        )
        patient = asyncio.ensure_future(call(batcher, "text", ["patient"], deadline=time.monotonic() + 60))
        await asyncio.sleep(0.15)
        runner.release.set()
        with pytest.raises(DeadlineExceededError):
            await late
        assert await patient == [("text", "patient")]
        await first
        ran = [p for _, batch in runner.batches for p in batch]
        assert "late1" not in ran and "late2" not in ran
        assert metrics.snapshot().dropped[("text", "deadline")] == 2
        assert batcher.admitted == 0
        batcher.close()

    asyncio.run(scenario())


def test_a_caller_that_goes_away_is_dropped_before_the_model() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, metrics = make(runner, max_batch_size=8)
        first = asyncio.ensure_future(call(batcher, "image", ["busy"]))
        await started(runner)
        gone = asyncio.ensure_future(call(batcher, "image", ["gone"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        stays = asyncio.ensure_future(call(batcher, "image", ["stays"]))
        await asyncio.sleep(0.01)
        runner.release.set()
        assert await stays == [("image", "stays")]
        await first
        assert "gone" not in [p for _, batch in runner.batches for p in batch]
        assert metrics.snapshot().dropped[("image", "abandoned")] == 1
        assert batcher.admitted == 0
        batcher.close()

    asyncio.run(scenario())


def test_a_failing_batch_fails_its_callers_only_with_internal() -> None:
    async def scenario() -> None:
        runner = Runner(fail_on="bad")
        batcher, _ = make(runner, max_batch_size=8)
        with pytest.raises(InternalError):
            await call(batcher, "text", ["ok", "bad"])
        assert await call(batcher, "text", ["fine"]) == [("text", "fine")]
        batcher.close()

    asyncio.run(scenario())


def test_admit_waiting_waits_for_room_instead_of_failing() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=4, max_queue=2)
        first = asyncio.ensure_future(call(batcher, "text", ["a"]))
        await started(runner)
        queued = asyncio.ensure_future(call(batcher, "text", ["b", "c"]))
        await asyncio.sleep(0.01)

        async def patient() -> list:
            with await batcher.admit_waiting(2) as admission:
                return await batcher.submit("text", ["d", "e"], admission)

        waiting = asyncio.ensure_future(patient())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        runner.release.set()
        assert await waiting == [("text", "d"), ("text", "e")]
        await asyncio.gather(first, queued)
        batcher.close()

    asyncio.run(scenario())


def test_close_fails_what_is_queued_with_unavailable() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=8)
        first = asyncio.ensure_future(call(batcher, "text", ["a"]))
        await started(runner)
        queued = asyncio.ensure_future(call(batcher, "text", ["b"]))
        await asyncio.sleep(0.01)
        closer = asyncio.ensure_future(asyncio.to_thread(batcher.close))
        while not batcher._closed:  # the close has begun (a fixed sleep races a busy machine)
            await asyncio.sleep(0.01)
        runner.release.set()
        await closer
        with pytest.raises(UnavailableError):
            await queued
        assert await first == [("text", "a")]
        with pytest.raises(UnavailableError):
            batcher.admit(1)

    asyncio.run(scenario())


# -- bulk (stream) work yields to interactive calls (issue item 3) ------------------------------


async def bulk_call(batcher: DynamicBatcher, kind: str, payloads: list) -> list:
    with await batcher.admit_waiting(len(payloads)) as admission:
        return await batcher.submit(kind, payloads, admission)


def test_interactive_items_run_before_older_bulk_items() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=4, max_queue=32)
        first = asyncio.ensure_future(call(batcher, "text", ["busy"]))
        await started(runner)
        streams = [asyncio.ensure_future(bulk_call(batcher, "text", [f"s{n}a", f"s{n}b"])) for n in range(3)]
        while batcher.queue_depth("text") < 6:
            await asyncio.sleep(0.01)
        users = [asyncio.ensure_future(call(batcher, "text", [f"u{n}"])) for n in range(3)]
        while batcher.queue_depth("text") < 9:
            await asyncio.sleep(0.01)
        runner.release.set()
        await asyncio.gather(first, *streams, *users)
        ran = [payloads for _, payloads in runner.batches[1:]]
        # The bulk items waited longer, yet the interactive ones go first, in a batch of their own.
        assert ran == [["u0", "u1", "u2"], ["s0a", "s0b", "s1a", "s1b"], ["s2a", "s2b"]], ran
        batcher.close()

    asyncio.run(scenario())


def test_bulk_work_holds_at_most_half_the_queue() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=8, max_queue=8)
        first = asyncio.ensure_future(call(batcher, "text", ["busy"]))
        await started(runner)
        streams = [asyncio.ensure_future(bulk_call(batcher, "text", [f"s{n}a", f"s{n}b"])) for n in range(4)]
        while batcher.queue_depth("text") < 4:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert batcher.queue_depth("text") == 4, "bulk work took more than its half of the queue"
        users = [asyncio.ensure_future(call(batcher, "text", [f"u{n}"])) for n in range(4)]  # none refused
        runner.release.set()
        await asyncio.gather(first, *streams, *users)
        batcher.close()

    asyncio.run(scenario())


def test_a_starving_bulk_item_goes_first() -> None:
    async def scenario() -> None:
        runner = Runner(hold=1)
        batcher, _ = make(runner, max_batch_size=2, max_queue=32, bulk_max_wait_ms=50)
        first = asyncio.ensure_future(call(batcher, "text", ["busy"]))
        await started(runner)
        stream = asyncio.ensure_future(bulk_call(batcher, "text", ["s"]))
        while batcher.queue_depth("text") < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the bulk item has waited past bulk_max_wait_ms
        users = [asyncio.ensure_future(call(batcher, "text", [f"u{n}"])) for n in range(4)]
        while batcher.queue_depth("text") < 5:
            await asyncio.sleep(0.01)
        runner.release.set()
        await asyncio.gather(first, stream, *users)
        assert runner.batches[1][1] == ["s", "u0"], runner.batches
        batcher.close()

    asyncio.run(scenario())
