"""The search page over a shop's catalog: products with several photos, filters from the
collection's schema, the page's state in its address, and the phone layout."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from ui_harness import ARTIFACTS, MAX_PRICE, TIMEOUT_MS, screenshot, settle

pytestmark = pytest.mark.functional

TAGS = '[data-param="tags"]'
#: Where the first result and the grid are, in CSS pixels of the viewport.
LAYOUT = """() => {
  const cards = [...document.querySelectorAll('#results .card')].map(c => c.getBoundingClientRect());
  const grid = document.querySelector('#results').getBoundingClientRect();
  const lefts = new Set(cards.map(c => Math.round(c.left)));
  return {
    viewport_width: document.documentElement.clientWidth,
    viewport_height: window.innerHeight,
    first_result_top: Math.round(cards[0].top),
    first_result_bottom: Math.round(cards[0].bottom),
    grid_width: Math.round(grid.width),
    columns: lefts.size,
    grid_used_width: Math.round(Math.max(...cards.map(c => c.right)) - Math.min(...cards.map(c => c.left))),
  };
}"""


def open_page(tab, url: str) -> list[dict]:
    tab.goto(url)
    return settle(tab)


def query_of(tab) -> dict[str, list[str]]:
    return parse_qs(urlsplit(tab.url).query)


def test_products_show_their_photos(tab, page_url) -> None:
    cards = open_page(tab, page_url + "/?q=a+red+dress")
    assert len({card["id"] for card in cards}) == len(cards) == 10  # ten distinct products
    several = next(card for card in cards if card["photos"] > 1)
    product = f'#results .card[data-id="{several["id"]}"]'
    thumbs = tab.locator(f"{product} .thumb")
    assert thumbs.count() == several["photos"]
    # Every photo is the product's own item (p00042, p00042#2, ...) and really loaded.
    items = [thumbs.nth(i).get_attribute("data-item") for i in range(thumbs.count())]
    assert all(item == several["id"] or item.startswith(several["id"] + "#") for item in items), items
    assert tab.evaluate(
        f"() => [...document.querySelectorAll('{product} .thumb img')].every(i => i.naturalWidth > 0)"
    )
    main = tab.locator(f"{product} img.photo")
    thumbs.nth(1).click()  # choosing a photo shows it large
    assert main.get_attribute("data-item") == items[1]
    assert thumbs.nth(1).get_attribute("aria-pressed") == "true"
    assert thumbs.nth(0).get_attribute("aria-pressed") == "false"
    tab.wait_for_function(f"() => document.querySelector('{product} img.photo').naturalWidth > 0")
    screenshot(tab, "several-photos")
    # "More like this" starts from the photo shown, and leaves the whole product out.
    tab.click(f"{product} .more-like-this")
    tab.wait_for_function("() => document.querySelector('#query-text').textContent.startsWith('More like: ')")
    similar = settle(tab)
    assert several["id"] not in {card["id"] for card in similar}
    assert any(card["photos"] > 1 for card in similar)  # its results are products with their photos
    assert query_of(tab)["id"] == [items[1]]
    assert tab.errors == []


def test_filters_come_from_the_schema(tab, page_url) -> None:
    tab.goto(page_url)
    tab.wait_for_selector("body[data-ready]", state="attached")
    # The price is money in the collection's currency; tags are a list field.
    assert tab.inner_text(f"label[for='{tab.get_attribute(MAX_PRICE, 'id')}']") == "Max price (USD)"
    for param in ("brand", "category", "color", "sku", "tags", "min_price", "max_price"):
        assert tab.locator(f'[data-param="{param}"]').count() == 1, param
    assert tab.locator('[data-param="description"], [data-param="image"]').count() == 0  # text, hidden
    tab.fill(TAGS, "sale")
    tab.fill(MAX_PRICE, "60")
    tab.fill("#text", "a dress")
    tab.click("#text-search")
    cards = settle(tab)
    assert cards
    for card in cards:
        price = float(card["metadata"]["price"])
        assert price <= 60 and "sale" in card["metadata"]["tags"].split("|"), card
        assert card["price"] == f"${price:,.2f}"  # shown in its currency
    assert tab.inner_text("#filter-count") == "(2)"
    assert query_of(tab)["tags"] == ["sale"] and query_of(tab)["max_price"] == ["60"]
    screenshot(tab, "schema-filters")

    # A tag on a result narrows the search to it too (any of the tags chosen).
    first = cards[0]
    other = next(t for t in first["metadata"]["tags"].split("|") if t != "sale")
    tab.click(f'#results .card[data-id="{first["id"]}"] .tag:text-is("{other}")')
    tab.wait_for_function(
        "value => document.querySelector('[data-param=\"tags\"]').value === value", arg=f"sale, {other}"
    )
    cards = settle(tab)
    assert all({"sale", other} & set(card["metadata"]["tags"].split("|")) for card in cards)
    assert query_of(tab)["tags"] == ["sale", other]
    assert tab.errors == []


def test_the_address_holds_the_page_state(tab, browser, page_url) -> None:
    tab.goto(page_url)
    tab.wait_for_selector("body[data-ready]", state="attached")
    tab.fill('[data-param="category"]', "dress, skirt")
    tab.fill("#text", "a red dress")
    tab.click("#text-search")
    settle(tab)
    tab.select_option("#k", "5")
    page_one = settle(tab)
    tab.click("#next")
    tab.wait_for_selector("#page-number:text-is('Page 2')")
    page_two = settle(tab)
    assert len(page_two) == 5 and not {c["id"] for c in page_one} & {c["id"] for c in page_two}
    state = query_of(tab)
    assert state == {"q": ["a red dress"], "category": ["dress", "skirt"], "k": ["5"], "page": ["2"]}, state

    # The same address in another window shows the same results, with the form filled in.
    other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    other.set_default_timeout(TIMEOUT_MS)
    try:
        assert open_page(other, tab.url) == page_two
        assert other.input_value("#text") == "a red dress"
        assert other.input_value('[data-param="category"]') == "dress, skirt"
        assert other.input_value("#k") == "5"
        assert other.inner_text("#page-number") == "Page 2"
    finally:
        other.context.close()

    # Back returns to page 1, then to 10 results; forward again to page 1 of 5.
    tab.go_back()
    tab.wait_for_selector("#page-number:text-is('Page 1')")
    assert settle(tab) == page_one
    tab.go_back()
    tab.wait_for_function("() => document.querySelector('#k').value === '10'")
    assert len(settle(tab)) == 10
    assert all(card["metadata"]["category"] in ("dress", "skirt") for card in settle(tab))
    assert tab.errors == []


@pytest.mark.parametrize("path", ["/?q=a+red+dress", "/?id=p00042"])
def test_phone_layout_starts_the_results_above_the_fold(browser, page_url, path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        cards = open_page(tab, page_url + path)
        assert len(cards) == 10
        layout = tab.evaluate(LAYOUT)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = "phone-text" if "q=" in path else "phone-similar"
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(layout, indent=1) + "\n")
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"))  # the first screen, as the visitor sees it
        # The whole first result is on the first screen, and the grid fills the width in two columns.
        assert layout["first_result_bottom"] < layout["viewport_height"], layout
        assert layout["columns"] == 2, layout
        assert layout["grid_used_width"] >= 0.9 * layout["viewport_width"], layout
        assert tab.evaluate("() => document.documentElement.scrollWidth") <= 375  # no sideways scroll
    finally:
        context.close()
