"""Helpers of the search page's browser tests: where things are, the page's server, screenshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsearch.apps.ui.settings import UISettings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHECKPOINT = REPO / "encoder_service" / "weights" / "clipsearch-demo.pt"
COLLECTION = "demo"
#: The demo catalog `make demo` serves (seed 0); 300 products hold 3 red dresses. The tests
#: ingest it with 1, 2 or 3 photos per product in turn (``images_per_product=3``): 600 items.
CATALOG_PRODUCTS = 300
CATALOG_ITEMS = 600
CHROMIUM = os.environ.get("CLIPSEARCH_CHROMIUM", "/usr/bin/chromium")
#: Known to work here: without the networking flags Chromium keeps dialling out of a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(reason: str) -> None:
    """Skips locally; fails under CI, where a missing browser means a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


class PageServer:
    """The page's server (the real PageServer) on its own event loop in a thread, on a free port."""

    def __init__(self, settings: UISettings, page=None):
        from dataclasses import replace

        from harness import ServerThread

        from clipsearch.apps.ui.server import PageServer as Server

        self.thread = ServerThread(lambda: Server(replace(settings, port=0), page).start(), name="ui")

    def __enter__(self) -> PageServer:
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.thread.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()


#: How many result images have finished loading with real pixels.
LOADED = "() => [...document.querySelectorAll('#results .card img')].filter(i => i.naturalWidth > 0).length"
#: True once every result image has finished loading (or failed to).
ALL_SETTLED = "() => [...document.querySelectorAll('#results .card img')].every(i => i.complete)"
CARDS = """cards => cards.map(card => {
    const metadata = {};
    const terms = card.querySelectorAll('dt');
    card.querySelectorAll('dd').forEach((dd, i) => { metadata[terms[i].textContent] = dd.dataset.value; });
    const price = card.querySelector('.price');
    return {id: card.dataset.id, title: card.querySelector('h3').textContent, metadata,
            photos: Number(card.dataset.photos), price: price ? price.textContent : null};
})"""
TIMEOUT_MS = 60_000
#: The filters the page builds from the collection's schema.
CATEGORY = '[data-param="category"]'
MIN_PRICE = '[data-param="min_price"]'
MAX_PRICE = '[data-param="max_price"]'


def settle(tab) -> list[dict]:
    """Waits for the answer and its images; the result cards (id, title, metadata)."""
    tab.wait_for_selector(
        '#results[data-state="done"], #results[data-state="error"]', state="attached", timeout=TIMEOUT_MS
    )
    tab.wait_for_function(ALL_SETTLED, timeout=TIMEOUT_MS)
    return tab.eval_on_selector_all("#results .card", CARDS)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
