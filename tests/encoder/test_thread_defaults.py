"""--threads 0: torch's default capped by the cores this process may use, and said in the log."""

from __future__ import annotations

import logging

import pytest
import torch

from encoder_service import factory

pytestmark = pytest.mark.unit


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_zero_means_one_per_available_core_and_is_logged(restore_threads, monkeypatch, caplog) -> None:
    monkeypatch.setattr(factory, "available_cores", lambda: 1)
    monkeypatch.setattr(factory, "TORCH_DEFAULT_THREADS", 8)
    with caplog.at_level(logging.INFO, logger="encoder_service.factory"):
        assert factory.set_torch_threads(0) == 1
    assert torch.get_num_threads() == 1
    assert "torch CPU threads: 1 (--threads 0: one per core; 1 cores available" in caplog.text


def test_torch_default_is_kept_below_the_available_cores(restore_threads, monkeypatch) -> None:
    monkeypatch.setattr(factory, "available_cores", lambda: 64)
    monkeypatch.setattr(factory, "TORCH_DEFAULT_THREADS", 2)  # e.g. physical cores, below logical
    assert factory.set_torch_threads(0) == 2


def test_an_explicit_count_wins(restore_threads, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="encoder_service.factory"):
        assert factory.set_torch_threads(1) == 1
    assert "torch CPU threads: 1 (--threads;" in caplog.text


def test_available_cores_reads_the_affinity() -> None:
    import os

    assert 1 <= factory.available_cores() <= len(os.sched_getaffinity(0))


def test_calibration_keeps_the_fastest_count_and_sets_it(restore_threads) -> None:
    """The run is timed under each count (set process-wide, run on a fresh thread)."""
    import time

    seen = []

    def run() -> None:  # slower with more threads, like a small model on few cores
        seen.append(torch.get_num_threads())
        time.sleep(0.002 * torch.get_num_threads())

    best, timings = factory.calibrate_torch_threads([2, 1, 2], run, repeats=2)
    assert best == 1 and set(timings) == {1, 2} and timings[1] < timings[2]
    assert seen == [2, 2, 2, 1, 1, 1]  # one untimed run and two timed per count, each count once


def test_threads_0_on_a_cpu_is_timed_on_the_model_and_logged(
    restore_threads, reference_model, caplog
) -> None:
    model = reference_model
    with caplog.at_level(logging.INFO, logger="encoder_service.factory"):
        chosen = factory.calibrated_threads(model, 2)
    assert chosen in (1, 2) and torch.get_num_threads() == chosen
    assert f"torch CPU threads: {chosen} (--threads 0: timed on this model" in caplog.text
    assert "1 thread " in caplog.text and "2 threads " in caplog.text
    assert factory.calibrated_threads(model, 1) == 1  # one core: nothing to compare
