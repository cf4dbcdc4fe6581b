"""The search page as a visitor uses it, in headless Chromium, with a screenshot of each answer."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys

import pytest
from ui_harness import (
    CATEGORY,
    COLLECTION,
    LOADED,
    MAX_PRICE,
    MIN_PRICE,
    TIMEOUT_MS,
    screenshot,
    settle,
)

from clipsearch.apps.ui.probe import wait_until_answering

pytestmark = pytest.mark.functional


def search_text(tab, page_url: str, text: str) -> list[dict]:
    tab.goto(page_url)
    # The page's script is listening (before it is, a busy machine's click submits the form
    # natively and the search never runs).
    tab.wait_for_selector('body[data-ready="true"]', state="attached", timeout=TIMEOUT_MS)
    tab.fill("#text", text)
    tab.click("#text-search")
    return settle(tab)


def assert_no_stack_trace(tab) -> None:
    text = tab.inner_text("body")
    assert "Traceback" not in text and 'File "' not in text and "Error:" not in text


def catalog_rows(services) -> list[dict]:
    with services.catalog.open(newline="") as file:
        return list(csv.DictReader(file))


def test_text_query_shows_product_images(tab, page_url) -> None:
    cards = search_text(tab, page_url, "a red dress")
    assert tab.evaluate(LOADED) >= 5
    assert len(cards) == 10  # the default k
    assert tab.inner_text("#query-text") == "“a red dress”"
    assert all(card["title"] and card["metadata"]["category"] for card in cards)
    assert "image" not in cards[0]["metadata"]  # server paths stay on the server
    # The trained demo model: the catalog's red dresses come first.
    top = [(card["metadata"]["category"], card["metadata"]["color"]) for card in cards[:3]]
    assert top == [("dress", "red")] * 3, top
    screenshot(tab, "text-query")
    assert tab.errors == []


def test_image_upload_finds_the_product(tab, page_url, services) -> None:
    row = catalog_rows(services)[42]
    tab.goto(page_url)
    tab.set_input_files("#image", str(services.catalog.parent / row["image"]))
    cards = settle(tab)
    assert tab.evaluate(LOADED) >= 5
    assert cards[0]["id"] == row["id"]
    assert tab.evaluate("() => document.querySelector('#query-image').naturalWidth") > 0
    assert tab.inner_text("#query-text") == row["image"].split("/")[-1]
    screenshot(tab, "image-query")
    assert tab.errors == []


def test_more_like_this_from_a_result(tab, page_url) -> None:
    first = search_text(tab, page_url, "blue sneakers")[0]
    tab.click(f'#results .card[data-id="{first["id"]}"] .more-like-this')
    tab.wait_for_function(
        "title => document.querySelector('#query-text').textContent === 'More like: ' + title",
        arg=first["title"],
    )
    cards = settle(tab)
    assert tab.evaluate(LOADED) >= 5
    assert first["id"] not in {card["id"] for card in cards}  # the product itself is left out
    assert tab.evaluate("() => document.querySelector('#query-image').naturalWidth") > 0
    assert cards[0]["metadata"]["category"] == first["metadata"]["category"]
    screenshot(tab, "more-like-this")
    assert tab.errors == []


def test_filters_and_k(tab, page_url) -> None:
    tab.goto(page_url)
    tab.wait_for_selector("body[data-ready]", state="attached")
    tab.fill(CATEGORY, "dress")
    tab.fill(MAX_PRICE, "100")
    tab.select_option("#k", "5")
    tab.fill("#text", "a red dress")
    tab.click("#text-search")
    cards = settle(tab)
    assert len(cards) == 5
    assert all(c["metadata"]["category"] == "dress" and float(c["metadata"]["price"]) <= 100 for c in cards)

    tab.select_option("#k", "20")  # a changed option re-runs the query
    tab.wait_for_function("() => document.querySelectorAll('#results .card').length > 5", timeout=TIMEOUT_MS)
    cards = settle(tab)
    assert 5 < len(cards) <= 20
    assert all(c["metadata"]["category"] == "dress" and float(c["metadata"]["price"]) <= 100 for c in cards)

    tab.fill(MIN_PRICE, "200")
    tab.dispatch_event(MIN_PRICE, "change")
    tab.wait_for_function(
        "() => document.querySelectorAll('#results .card').length === 0", timeout=TIMEOUT_MS
    )
    assert tab.inner_text("#message") == "Min price (200) is above max price (100)."
    tab.fill(MAX_PRICE, "")
    tab.dispatch_event(MAX_PRICE, "change")
    tab.wait_for_selector("#summary:has-text('No products match')", timeout=TIMEOUT_MS)
    assert tab.errors == []


def test_unreadable_upload_gets_a_message(tab, page_url, tmp_path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("these are my notes, not a picture\n")
    tab.goto(page_url)
    tab.set_input_files("#image", str(fake))
    tab.wait_for_selector('#results[data-state="error"]', state="attached", timeout=TIMEOUT_MS)
    assert tab.inner_text("#message").startswith("That file could not be read as an image: not a JPEG")
    tab.wait_for_selector("#query-image", state="hidden")  # no broken-image icon for it
    assert_no_stack_trace(tab)
    screenshot(tab, "bad-upload")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_service_down_message(tab, services) -> None:
    """`clipsearch ui` (the real command) pointed at an encoder that is not running."""
    dead, port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "clipsearch.apps.cli",
        "ui",
        "--port",
        str(port),
        "--collection",
        COLLECTION,
    ]
    command += ["--encoder", f"127.0.0.1:{dead}", "--index", services.index]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_answering(url, timeout_s=60)
        expected = f"The encoder service at 127.0.0.1:{dead} is not reachable"
        tab.goto(url)
        tab.wait_for_selector(f"#message:has-text('{expected}')", timeout=TIMEOUT_MS)
        assert tab.inner_text("#status") == "Not ready"

        tab.fill("#text", "a red dress")
        tab.click("#text-search")
        tab.wait_for_selector('#results[data-state="error"]', state="attached", timeout=TIMEOUT_MS)
        assert expected in tab.inner_text("#message")
        assert_no_stack_trace(tab)
        screenshot(tab, "service-down")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr


def test_link_with_a_query_runs_it(tab, page_url) -> None:
    tab.goto(page_url + "/?q=a+red+dress&k=5")
    cards = settle(tab)
    assert len(cards) == 5 and tab.input_value("#text") == "a red dress"


def test_typos_and_skus_find_their_products_by_default(tab, page_url, services) -> None:
    """The page's default mode (auto) is hybrid on a collection with text fields: a typo and a
    SKU, which the CLIP model alone cannot match, find their products, with the words shown."""
    cards = search_text(tab, page_url, "rde dres")
    top = [(card["metadata"]["category"], card["metadata"]["color"]) for card in cards[:3]]
    assert top == [("dress", "red")] * 3, top
    assert "rde→red" in tab.inner_text("#results .card .matched")
    row = catalog_rows(services)[57]
    assert search_text(tab, page_url, row["sku"])[0]["id"] == row["id"]
    assert tab.errors == []
