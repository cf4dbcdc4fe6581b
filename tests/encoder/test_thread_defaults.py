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
