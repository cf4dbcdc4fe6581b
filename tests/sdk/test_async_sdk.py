"""clipsearch.aio has the sync surface and gives the same answers."""

from __future__ import annotations

import asyncio
import csv

import numpy as np
import pytest

from clipsearch import NotFoundError, SearchClient, aio
from clipsearch.query import Query

pytestmark = pytest.mark.functional


def test_async_client_matches_sync_client(pair, small_catalog) -> None:
    rows = list(csv.DictReader(small_catalog.open()))
    image = small_catalog.parent / rows[0]["image"]

    async def scenario():
        async with aio.SearchClient(pair.encoder, pair.index) as client:
            await client.create_collection("aio_e2e", exist_ok=True)
            report = await client.ingest(small_catalog, collection="aio_e2e")
            text_hits, image_hits, hybrid_hits = await asyncio.gather(
                client.search_text("a blue hat", collection="aio_e2e", k=5),
                client.search_image(image, collection="aio_e2e", k=5),
                client.search(Query.image(image) - Query.text("red", 0.3), collection="aio_e2e", k=5),
            )
            similar = await client.more_like_this(rows[0]["id"], collection="aio_e2e", k=3)
            with pytest.raises(NotFoundError):
                await client.index.describe_collection("missing")
            return report, text_hits, image_hits, hybrid_hits, similar

    report, text_hits, image_hits, hybrid_hits, similar = asyncio.run(scenario())
    assert report.ingested == 40
    with SearchClient(pair.encoder, pair.index) as sync:
        assert [h.id for h in sync.search_text("a blue hat", collection="aio_e2e", k=5)] == [
            h.id for h in text_hits
        ]
        sync_hybrid = sync.search(Query.image(image) - Query.text("red", 0.3), collection="aio_e2e", k=5)
        np.testing.assert_allclose([h.score for h in sync_hybrid], [h.score for h in hybrid_hits], atol=1e-5)
        assert [h.id for h in sync.more_like_this(rows[0]["id"], collection="aio_e2e", k=3)] == [
            h.id for h in similar
        ]
    assert image_hits[0].id == rows[0]["id"]
