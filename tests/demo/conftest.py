"""The trained demo model behind the real encoder service, a real index service, and a catalog
rendered from a seed the model never saw (training used seeds 1000 and 99).

Two collections over the same catalog: ``fresh`` (ingested once) and ``churned`` (ingested,
a third deleted, those re-upserted), so every figure is checked in both states.
"""

from __future__ import annotations

import pytest
from harness import ServerThread
from quality_stack import CATALOG_SEED, CHECKPOINT, IMAGE_TRIALS, N_PRODUCTS, Figures, Stack, load_image

from clipsearch import SearchClient
from clipsearch.apps.demo.catalog import generate_catalog
from clipsearch.apps.demo.training.quality import (
    StackSearch,
    measure_image_queries,
    measure_text_queries,
    products_from_csv,
    reupsert_csv,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    assert CHECKPOINT.is_file(), (
        f"missing {CHECKPOINT}: train it with python -m clipsearch.apps.demo.training.train_demo"
    )
    catalog = generate_catalog(tmp_path_factory.mktemp("catalog"), n_products=N_PRODUCTS, seed=CATALOG_SEED)
    products = products_from_csv(catalog)
    encoder_settings = EncoderSettings(port=0, model="clipsearch-demo", pretrained=str(CHECKPOINT))
    index_settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("index-data"))
    with (
        ServerThread(lambda: create_encoder(encoder_settings), name="encoder") as encoder,
        ServerThread(lambda: create_index(index_settings), name="index") as index,
        SearchClient(encoder=encoder.address, index=index.address) as client,
    ):
        for name in ("fresh", "churned"):
            client.create_collection(name, num_shards=2)
            report = client.ingest(catalog, collection=name)
            assert (report.ingested, len(report.failed)) == (N_PRODUCTS, 0), report

        churned_ids = {p.id for p in products[::3]}
        assert client.delete(collection="churned", ids=sorted(churned_ids)) == len(churned_ids)
        remaining = [p for p in products if p.id not in churned_ids]
        probe = StackSearch(client, "churned", products)
        while_deleted = measure_text_queries(remaining, probe.texts)
        report = client.ingest(reupsert_csv(catalog, churned_ids), collection="churned")
        assert (report.ingested, len(report.failed)) == (len(churned_ids), 0), report

        yield Stack(client, catalog, products, churned_ids, while_deleted, probe.returned_ids)


@pytest.fixture(scope="session", params=["fresh", "churned"])
def figures(request: pytest.FixtureRequest, stack: Stack) -> Figures:
    """The retrieval figures of one collection, measured once per session."""
    search = StackSearch(stack.client, request.param, stack.products)
    text = measure_text_queries(stack.products, search.texts)
    image = measure_image_queries(
        stack.products, lambda p: load_image(stack.catalog, p), search.images, trials=IMAGE_TRIALS, seed=1
    )
    return Figures(request.param, text, image, search.mismatches)
