"""The model-upgrade flow with an alias, under a concurrent search load: new collection with the
new model, ingest, swap the alias, move the clients, drop the old collection. No search fails.

Short version; ``python benchmarks/lifecycle.py swap`` runs the swap longer on the index alone
(vector searches from 8 clients while a 100k collection is ingested and the alias switched 9
times) and reports the searches served and failed during it (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from harness import ServerThread

from clipsearch import SearchClient

pytestmark = pytest.mark.reliability

QUERIES = ["a red dress", "blue shorts", "a striped hat", "green trousers"]


def _searcher(encoder: str, index: str, stop: threading.Event, tally: Counter, name: str) -> threading.Thread:
    def run() -> None:
        with SearchClient(encoder, index) as client:
            n = 0
            while not stop.is_set():
                try:
                    hits = client.search_text(QUERIES[n % len(QUERIES)], collection="upgrade", k=5)
                    tally[f"{name} ok" if len(hits) == 5 else f"{name} short"] += 1
                except Exception as error:  # any failed search fails the test
                    tally[f"{name} failed: {type(error).__name__}: {error}"] += 1
                n += 1

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_alias_swap_to_a_new_model_fails_no_search(pair, small_catalog) -> None:
    from encoder_service.server import create_server
    from encoder_service.settings import EncoderSettings

    new_model = EncoderSettings(port=0, model="clipsearch-demo", pretrained="random")
    with (
        ServerThread(lambda: create_server(new_model), name="encoder-b") as encoder_b,
        SearchClient(pair.encoder, pair.index) as old,
        SearchClient(encoder_b.address, pair.index) as new,
    ):
        assert old.model.fingerprint != new.model.fingerprint
        old.create_collection("upgrade_v1", exist_ok=True)
        old.ingest(small_catalog, collection="upgrade_v1")
        old.index.set_alias("upgrade", "upgrade_v1")

        tally: Counter = Counter()
        stop_old, stop_new = threading.Event(), threading.Event()
        old_clients = [_searcher(pair.encoder, pair.index, stop_old, tally, "old") for _ in range(3)]
        # The new model's collection is built while the old one serves.
        new.create_collection("upgrade_v2", exist_ok=True)
        assert new.ingest(small_catalog, collection="upgrade_v2").failed == []
        before_swap = tally["old ok"]
        assert old.index.set_alias("upgrade", "upgrade_v2") == "upgrade_v1"
        new_clients = [_searcher(encoder_b.address, pair.index, stop_new, tally, "new") for _ in range(3)]
        deadline = time.monotonic() + 60
        while (tally["new ok"] < 30 or tally["old ok"] < before_swap + 30) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_old.set()  # every old client has moved to the new model
        for thread in old_clients:
            thread.join()
        assert old.index.drop_collection("upgrade_v1")
        time.sleep(0.5)
        stop_new.set()
        for thread in new_clients:
            thread.join()

        failed = {key: count for key, count in tally.items() if not key.endswith(" ok")}
        assert failed == {}, failed
        assert tally["old ok"] >= before_swap + 30 and tally["new ok"] >= 30, tally
        # After the swap the alias answers with the new model's collection.
        assert new.search_text("a red dress", collection="upgrade", k=3) == new.search_text(
            "a red dress", collection="upgrade_v2", k=3
        )
        old.index.delete_alias("upgrade")
        old.index.drop_collection("upgrade_v2")
