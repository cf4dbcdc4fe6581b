"""Disk full during writes, on a tmpfs of a few MiB this test mounts for the index's data dir.

The write that does not fit is refused (RESOURCE_EXHAUSTED), not acknowledged and not
applied; everything acknowledged before stays intact; snapshots failing for lack of space
do not take the server down; once the filesystem grows, writes go through again.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from harness import ServerThread
from reliability_support import report

from clipsearch import IndexClient
from clipsearch.errors import ResourceExhaustedError
from clipsearch.health import wait_until_serving

pytestmark = pytest.mark.reliability

DIM = 64


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}")
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_disk_full_refuses_the_write_keeps_the_rest_and_recovers(small_disk: Path) -> None:
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    settings = IndexSettings(
        port=0, data_dir=small_disk / "index", snapshot_interval_s=0.2, snapshot_min_ops=1, search_threads=1
    )
    rng = np.random.default_rng(5)
    acked: dict[str, np.ndarray] = {}
    refused_batch: list[str] = []
    refused_message = ""
    with ServerThread(lambda: create_server(settings), name="index-disk-full") as thread:
        client = IndexClient(thread.address, timeout_s=30)
        client.create_collection("full", DIM, metric="l2", num_shards=2)
        for batch in range(1000):
            ids = [f"b{batch}-{j}" for j in range(100)]
            vectors = rng.standard_normal((100, DIM)).astype(np.float32)
            try:
                client.upsert("full", ids, vectors, [{"batch": batch}] * 100)
            except ResourceExhaustedError as exc:
                refused_batch, refused_message = ids, str(exc)
                break
            acked.update(zip(ids, vectors, strict=True))
        assert refused_batch, "the 3 MiB disk never filled up"
        wait_until_serving(thread.address, timeout_s=10)
        assert not client.get("full", refused_batch, missing_ok=True), "a refused write was applied"
        got = client.get("full", list(acked), include_vectors=True)
        assert len(got) == len(acked)
        assert all(np.array_equal(item.vector, acked[item.id]) for item in got)
        sample = list(acked)[::97]
        hits = client.search_batch("full", np.stack([acked[i] for i in sample]), k=1)
        assert [h[0].id for h in hits] == sample

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        retry_vectors = rng.standard_normal((100, DIM)).astype(np.float32)
        assert client.upsert("full", refused_batch, retry_vectors) == 100
        assert len(client.get("full", [*acked, *refused_batch])) == len(acked) + 100
        client.close()
    # The stop snapshotted what changed; a restart on the same files has everything.
    with ServerThread(lambda: create_server(settings), name="index-disk-full-again") as thread:
        with IndexClient(thread.address) as client:
            assert len(client.get("full", [*acked, *refused_batch])) == len(acked) + 100
    report(
        "disk_full",
        filesystem_mib=3,
        acknowledged_before_full=len(acked),
        refused_message=refused_message[:120],
        lost=0,
        resumed_after_growing_to_mib=64,
    )


def test_sigterm_on_a_full_disk_is_a_clean_stop(small_disk: Path, tmp_path: Path) -> None:
    """The issue: SIGTERM on a full disk exited 1 logging "cannot start: No space left on device",
    though the server was stopping. The snapshot the stop tries does not fit: it is skipped with
    a warning (the store has every acknowledged write), the stores close, the exit is 0."""
    import signal

    from reliability_support import start_service, stop_process

    data_dir = small_disk / "index"
    process, address = start_service(
        "index",
        "--data-dir",
        str(data_dir),
        "--snapshot-interval-s",
        "3600",
        "--grace-s",
        "3",
        log_dir=tmp_path,
    )
    acked = 0
    try:
        with IndexClient(address, timeout_s=30) as client:
            for name in ("a", "b"):
                client.create_collection(name, DIM, metric="l2")
            rng = np.random.default_rng(8)
            for batch in range(1000):
                try:
                    client.upsert(
                        "ab"[batch % 2],
                        [f"{batch}-{j}" for j in range(100)],
                        rng.standard_normal((100, DIM)).astype(np.float32),
                    )
                    acked += 100
                except ResourceExhaustedError:
                    break
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        stop_process(process)
    log = next(tmp_path.glob("index-*.log")).read_text()
    assert code == 0, log[-2000:]
    assert "cannot start" not in log and "Traceback" not in log, log[-3000:]
    assert "no snapshot" in log and "No space left on device" in log
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    process, address = start_service("index", "--data-dir", str(data_dir), log_dir=tmp_path / "again")
    try:
        with IndexClient(address, timeout_s=30) as client:
            assert sum(c.item_count for c in client.list_collections()) == acked
            assert not any(c.quarantine for c in client.list_collections())
    finally:
        stop_process(process)
