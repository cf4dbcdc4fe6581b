"""The search page in real headless Chromium, over the real services on loopback.

The encoder serves the trained demo model (so "a red dress" must find red dresses), the index
a fresh data dir holding the demo catalog as a shop's (1 to 3 photos per product, tags, prices
in USD), and the page runs in uvicorn in a thread. Chromium
is Debian's (/usr/bin/chromium), driven by Playwright; Playwright's own browser download is
never used. Without Chromium or Playwright the browser tests skip locally, and fail when the
CI environment variable is set. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import ServerThread
from ui_harness import (
    CATALOG_ITEMS,
    CATALOG_PRODUCTS,
    CHECKPOINT,
    CHROMIUM,
    CHROMIUM_FLAGS,
    COLLECTION,
    TIMEOUT_MS,
    PageServer,
    missing,
)

from clipsearch import SearchClient
from clipsearch.apps.ui.settings import UISettings


@dataclass(frozen=True)
class Services:
    encoder: str
    index: str
    catalog: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from clipsearch.apps.demo.catalog import SHOP_SCHEMA, ensure_demo_catalog
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    assert CHECKPOINT.is_file(), f"missing {CHECKPOINT}: python -m clipsearch.apps.demo.training.train_demo"
    catalog = ensure_demo_catalog(
        tmp_path_factory.mktemp("home"), n_products=CATALOG_PRODUCTS, images_per_product=3, tags=True
    )
    encoder_settings = EncoderSettings(port=0, model="clipsearch-demo")  # its shipped checkpoint
    index_settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("index-data"))
    with (
        ServerThread(lambda: create_encoder(encoder_settings), name="encoder") as encoder,
        ServerThread(lambda: create_index(index_settings), name="index") as index,
    ):
        with SearchClient(encoder.address, index.address) as client:
            client.create_collection(COLLECTION, num_shards=2, schema=SHOP_SCHEMA)
            report = client.ingest(catalog, collection=COLLECTION)
        assert report.ingested == CATALOG_ITEMS and not report.failed
        yield Services(encoder.address, index.address, catalog)


@pytest.fixture(scope="session")
def page_url(services: Services) -> Iterator[str]:
    settings = UISettings(
        port=0,
        encoder=services.encoder,
        index=services.index,
        collection=COLLECTION,
        image_root=str(services.catalog.parent),
    )
    with PageServer(settings) as server:
        yield server.url


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser):
    """A fresh browser context and page per test; console errors are collected in ``tab.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)  # generous: the machine running the suite may be busy
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
