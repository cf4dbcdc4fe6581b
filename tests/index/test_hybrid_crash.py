"""kill -9 the index server at random moments while items are upserted, renamed (metadata
updates) and deleted in a collection with text and keyword fields; after every restart the
keyword and vector sides agree: every stored item is found by its own words and its own
vector, and no word of an item's other versions (or of an item not stored) finds anything.

Every version of an item gets words of its own (``w<trial>b<batch>i<j>`` when written,
``u…`` when renamed), so the check is exact: a stale lexical row, a missing one, or an item
one side holds and the other does not each show as a wrong answer. Short here (3 kills);
``CLIPSEARCH_LONG=1`` runs 15.
"""

from __future__ import annotations

import functools
import random
import signal

import grpc
import numpy as np
import pytest
from reliability_support import crash_machinery, kill_while_writing, report, size

from clipsearch import IndexClient
from clipsearch.errors import ClipsearchError
from clipsearch.schema import Field, FieldType, Schema

pytestmark = pytest.mark.reliability

COLLECTION = "words"
DIM = 8
#: Items whose every version is searched after each restart (all of them are counted).
SAMPLE = 120
SCHEMA = Schema((Field("title", FieldType.TEXT), Field("sku", FieldType.KEYWORD)))


class Attempts:
    """Every version of every item the writer tried, whether or not it was acknowledged."""

    def __init__(self) -> None:
        self.tokens: dict[str, set[str]] = {}  # id -> every title token it ever had
        self.vectors: dict[str, np.ndarray] = {}
        self.acknowledged = 0


def writer(client: IndexClient, attempts: Attempts, rng: np.random.Generator, trial: int, stop) -> None:
    batch = 0
    while not stop.is_set():
        batch += 1
        known = sorted(attempts.vectors)
        try:
            if batch % 5 == 0 and known:
                doomed = [str(x) for x in rng.choice(known, size=min(6, len(known)), replace=False)]
                client.delete(COLLECTION, doomed)
            elif batch % 3 == 0 and known:
                renamed = [str(x) for x in rng.choice(known, size=min(6, len(known)), replace=False)]
                for item_id in renamed:
                    token = f"u{trial}b{batch}i{item_id}"
                    attempts.tokens[item_id].add(token)
                    client.update_metadata(COLLECTION, [item_id], set={"title": f"renamed {token}"})
            else:
                ids = [f"t{trial}b{batch}i{j}" for j in range(24)]
                vectors = rng.standard_normal((24, DIM)).astype(np.float32)
                for item_id, vector in zip(ids, vectors, strict=True):
                    attempts.tokens.setdefault(item_id, set()).add(f"w{item_id}")
                    attempts.vectors[item_id] = vector
                metadata = [{"title": f"item w{i}", "sku": f"SKU-{i}"} for i in ids]
                client.upsert(COLLECTION, ids, vectors, metadata)
        except (ClipsearchError, grpc.RpcError):
            return
        attempts.acknowledged += 1


def check_sides_agree(client: IndexClient, attempts: Attempts, rng: random.Random) -> int:
    """Asserts that the keyword side and the store/vector side agree, on every item ever tried
    (counts) and on a sample of them (their words, SKU and vector): the items stored."""
    ids = sorted(attempts.tokens)
    stored = {item.id: item for item in client.get(COLLECTION, ids, missing_ok=True)}
    assert client.count(COLLECTION) == len(stored)
    for item_id in rng.sample(ids, min(SAMPLE, len(ids))):
        item = stored.get(item_id)
        current = item.metadata["title"].split()[-1] if item is not None else None
        for token in attempts.tokens[item_id]:
            found = [h.id for h in client.keyword_search(COLLECTION, token, k=3)]
            if token == current:
                assert found == [item_id], f"{item_id} is stored as {token!r} but its words find {found}"
            else:
                assert item_id not in found, f"{token!r} is not {item_id}'s title, yet finds it"
        if item is not None:
            assert [h.id for h in client.keyword_search(COLLECTION, item.metadata["sku"], k=1)] == [item_id]
            [hit] = client.search(COLLECTION, attempts.vectors[item_id], k=1, mode="hybrid", texts=[current])
            assert hit.id == item_id
    return len(stored)


def test_kill_9_during_ingest_leaves_keyword_and_vector_sides_agreeing(tmp_path) -> None:
    crash = crash_machinery()
    trials = size(3, 15)
    rng, chooser = np.random.default_rng(17), random.Random(17)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    attempts = Attempts()
    checked: list[int] = []
    for trial in range(trials + 1):
        port = crash.free_port()
        process = crash.start_server(data_dir, port, ["--snapshot-interval-s", "0.3"])
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            crash.wait_serving(channel, process, timeout_s=60)
            client = IndexClient(f"127.0.0.1:{port}", timeout_s=20)
            client.create_collection(COLLECTION, DIM, num_shards=2, schema=SCHEMA, exist_ok=True)
            checked.append(check_sides_agree(client, attempts, chooser))
            if trial == trials:
                client.close()
                break
            kill_while_writing(
                process, functools.partial(writer, client, attempts, rng, trial), chooser.uniform(0.3, 1.5)
            )
            client.close()
        finally:
            channel.close()
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
    report(
        "hybrid_crash", trials=trials, acknowledged_writes=attempts.acknowledged, items_checked=checked[-1]
    )
    assert attempts.acknowledged >= trials and checked[-1] > 0, "too little was written to test anything"
