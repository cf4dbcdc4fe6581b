"""A procedurally rendered product catalog for the offline demo, training and quality tests.

Every product is drawn with Pillow from its attributes (category, color, pattern) plus
per-product jitter (position, scale, mirror, shade, background, pattern geometry), so no
two images are identical and a catalog is a pure function of ``(seed, n_products)``.
Product ``i`` depends only on ``(seed, i)``: a catalog of 100 products is the first
100 products of the one of 300.

Only Pillow, numpy and the standard library are used: this ships in the light SDK install.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: Bump when rendering or attributes change: cached catalogs of older versions are not reused.
#: 2: brand, SKU and description columns (issue 17).
GENERATOR_VERSION = 2

#: Attribute order is part of the catalog definition; append, never reorder.
CATEGORIES: tuple[str, ...] = (
    "dress",
    "t-shirt",
    "trousers",
    "shorts",
    "skirt",
    "sneaker",
    "boot",
    "handbag",
    "hat",
    "scarf",
)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "orange": (245, 130, 20),
    "yellow": (245, 210, 30),
    "green": (40, 150, 50),
    "blue": (30, 80, 210),
    "purple": (130, 50, 170),
    "pink": (245, 135, 185),
    "brown": (120, 70, 30),
    "black": (25, 25, 25),
    "white": (248, 248, 248),
    "gray": (130, 130, 130),
}
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checked")

# Words used in titles and captions.
_PLURAL = {
    "dress": "dresses",
    "t-shirt": "t-shirts",
    "trousers": "trousers",
    "shorts": "shorts",
    "skirt": "skirts",
    "sneaker": "sneakers",
    "boot": "boots",
    "handbag": "handbags",
    "hat": "hats",
    "scarf": "scarves",
}
_ALWAYS_PLURAL = {"trousers", "shorts"}  # "red trousers", "a pair of red trousers"
_PAIRED = {"trousers", "shorts", "sneaker", "boot"}  # "a pair of ..." reads naturally
_PATTERN_NOUN = {"plain": "no pattern", "striped": "stripes", "dotted": "polka dots", "checked": "checks"}
_PATTERN_SYNONYMS = {
    "plain": ("plain", "solid"),
    "striped": ("striped",),
    "dotted": ("dotted", "polka-dot"),
    "checked": ("checked", "checkered"),
}
_PRICE_RANGE = {  # (low, high) in whole currency units, per category
    "dress": (35, 160),
    "t-shirt": (9, 40),
    "trousers": (25, 110),
    "shorts": (15, 60),
    "skirt": (20, 90),
    "sneaker": (40, 180),
    "boot": (60, 240),
    "handbag": (30, 300),
    "hat": (12, 70),
    "scarf": (10, 80),
}

#: Invented brands (none is a real company's name as far as we know); append, never reorder.
BRANDS: tuple[str, ...] = (
    "Northwind",
    "Alder & Finch",
    "Kestrel",
    "Marlow Lane",
    "Oakhaven",
    "Velora",
    "Brightwater",
    "Copperline",
    "Fennwick",
    "Halden",
    "Juniper Row",
    "Lumenko",
    "Mistral",
    "Novara",
    "Pellham",
    "Quillon",
    "Rowan Street",
    "Saltmarsh",
    "Tamsin",
    "Umbra",
    "Vantor",
    "Wrenfield",
    "Yarrow",
    "Zephyrine",
)
_CATEGORY_CODE = {
    "dress": "DR",
    "t-shirt": "TS",
    "trousers": "TR",
    "shorts": "SH",
    "skirt": "SK",
    "sneaker": "SN",
    "boot": "BT",
    "handbag": "HB",
    "hat": "HT",
    "scarf": "SC",
}
#: What a shop's copywriter calls the product besides its category (synonyms and kinds).
_NOUNS = {
    "dress": ("dress", "dress", "frock", "sundress"),
    "t-shirt": ("t-shirt", "tee", "top", "crew-neck tee"),
    "trousers": ("trousers", "pants", "chinos", "slacks"),
    "shorts": ("shorts", "bermudas", "short pants"),
    "skirt": ("skirt", "midi skirt", "mini skirt"),
    "sneaker": ("sneakers", "trainers", "running shoes", "low-top sneakers"),
    "boot": ("boots", "ankle boots", "chelsea boots", "leather boots"),
    "handbag": ("handbag", "purse", "tote", "shoulder bag"),
    "hat": ("hat", "bucket hat", "fedora", "sun hat"),
    "scarf": ("scarf", "wrap", "muffler", "shawl"),
}
_MATERIALS = {
    "dress": ("cotton", "linen", "silk", "viscose"),
    "t-shirt": ("cotton", "organic cotton", "jersey", "linen"),
    "trousers": ("cotton twill", "wool", "linen", "corduroy"),
    "shorts": ("cotton", "denim", "linen", "nylon"),
    "skirt": ("cotton", "wool", "denim", "satin"),
    "sneaker": ("canvas", "leather", "mesh", "suede"),
    "boot": ("leather", "suede", "waxed leather", "rubber"),
    "handbag": ("leather", "canvas", "vegan leather", "straw"),
    "hat": ("wool felt", "straw", "cotton", "canvas"),
    "scarf": ("wool", "cashmere", "silk", "merino"),
}
_PATTERN_PHRASE = {
    "plain": ("in a solid colour", "in one solid shade", "with a clean, plain finish"),
    "striped": ("with stripes", "with bold stripes", "with fine pinstripes"),
    "dotted": ("with polka dots", "with a dotted print", "with small dots"),
    "checked": ("with a check pattern", "with a checkered print", "in gingham checks"),
}
_OPENERS = ("Lightweight", "Everyday", "Classic", "Relaxed", "Tailored", "Soft", "Durable", "Easy-care")
_CLOSERS = (
    "Machine washable.",
    "Made to last.",
    "True to size.",
    "A wardrobe staple.",
    "Pairs with everything.",
    "Ethically made.",
    "Free returns.",
)


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    category: str
    color: str
    pattern: str
    price: float
    #: Which catalog (seed) and position the product comes from; its pixels depend on these only.
    seed: int
    index: int
    #: Invented brand, its SKU and a short description: the words a shopper may type that a
    #: picture cannot show (hybrid search, docs/hybrid.md). Drawn from their own random stream,
    #: so the attributes and pixels above are those of catalogs made before these existed.
    brand: str = ""
    sku: str = ""
    description: str = ""


# ----------------------------------------------------------------------------------------------
# Attributes, titles and captions


def make_products(n_products: int, seed: int = 0) -> list[Product]:
    """The first ``n_products`` products of catalog ``seed``.

    Categoryxcolor pairs are dealt from a shuffled deck per cycle of ``len(CATEGORIES) *
    len(COLORS)`` products, so every pair is present once ``n_products`` reaches that number;
    the pattern and the jitter are drawn per product.
    """
    if n_products < 0:
        raise ValueError(f"n_products must be >= 0, got {n_products}")
    pairs = [(c, k) for c in CATEGORIES for k in COLORS]
    products = []
    deck: list[int] = []
    for index in range(n_products):
        cycle, position = divmod(index, len(pairs))
        if position == 0:
            deck = list(np.random.default_rng([seed, 1, cycle]).permutation(len(pairs)))
        category, color = pairs[deck[position]]
        rng = np.random.default_rng([seed, 0, index])
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        low, high = _PRICE_RANGE[category]
        price = float(rng.integers(low, high + 1)) - 0.01
        brand, sku, description = _shop_text(category, color, pattern, seed, index)
        products.append(
            Product(
                id=f"p{index:05d}",
                title=title_for(category, color, pattern),
                category=category,
                color=color,
                pattern=pattern,
                price=round(price, 2),
                seed=seed,
                index=index,
                brand=brand,
                sku=sku,
                description=description,
            )
        )
    return products


def _shop_text(category: str, color: str, pattern: str, seed: int, index: int) -> tuple[str, str, str]:
    """(brand, SKU, description) of product ``index``: its own random stream, unique SKUs per catalog.

    The SKU is the brand's code, the category's code and a number that is a bijection of the
    index modulo 10^6 (7919 is prime to 10), so no two products of a catalog share one.
    """
    rng = np.random.default_rng([seed, 3, index])
    brand = BRANDS[int(rng.integers(len(BRANDS)))]
    code = "".join(ch for ch in brand.upper() if ch.isalpha())[:3]
    number = (index * 7919 + seed * 104_729) % 1_000_000
    sku = f"{code}-{_CATEGORY_CODE[category]}-{number:06d}"
    noun = _NOUNS[category][int(rng.integers(len(_NOUNS[category])))]
    material = _MATERIALS[category][int(rng.integers(len(_MATERIALS[category])))]
    opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
    phrase = _PATTERN_PHRASE[pattern][int(rng.integers(len(_PATTERN_PHRASE[pattern])))]
    closer = _CLOSERS[int(rng.integers(len(_CLOSERS)))]
    description = f"{opener} {material} {noun} in {color} {phrase}. {closer}"
    return brand, sku, description


def title_for(category: str, color: str, pattern: str) -> str:
    """'Red striped dress', 'Blue sneakers', 'Black dotted trousers' (plain is not named)."""
    noun = _PLURAL[category] if category in _ALWAYS_PLURAL or category in _PAIRED else category
    words = [color] + ([] if pattern == "plain" else [pattern]) + [noun]
    text = " ".join(words)
    return text[0].upper() + text[1:]


def query_for(category: str, color: str, pattern: str | None = None) -> str:
    """The canonical search phrase: 'a red dress', 'a red striped dress', 'a plain blue hat'.

    Without ``pattern`` the phrase names category and color only; with it, all three.
    """
    noun, article = _noun_and_article(category, plural=category in _ALWAYS_PLURAL)
    adjectives = (
        [color] if pattern is None else ([pattern, color] if pattern == "plain" else [color, pattern])
    )
    return _with_article(article, " ".join([*adjectives, noun]))


def caption_for(product: Product) -> str:
    """The canonical caption of a product: its category, color and pattern in one phrase."""
    return query_for(product.category, product.color, product.pattern)


def captions(category: str, color: str, pattern: str | None = None) -> list[str]:
    """Natural phrasings of a product description, for training and tests.

    With ``pattern`` every phrasing names all three attributes ("a dotted yellow scarf",
    "blue sneakers with stripes", "a solid black hat"); without it, category and color only
    ("blue sneakers", "a red dress"), a description that fits every pattern.
    """
    singular, article = _noun_and_article(category, plural=category in _ALWAYS_PLURAL)
    plural = _PLURAL[category]
    paired = category in _PAIRED
    if pattern is None:
        texts = [
            _with_article(article, f"{color} {singular}"),
            _with_article(article, f"{singular} in {color}"),
            _with_article(article, f"{color} colored {singular}"),
            f"{color} {plural}",
            f"{plural} in {color}",
            f"a photo of {_with_article(article, f'{color} {singular}')}",
        ]
        if paired:
            texts.append(f"a pair of {color} {plural}")
        return list(dict.fromkeys(texts))
    texts = []
    for adjective in _PATTERN_SYNONYMS[pattern]:
        texts += [
            _with_article(article, f"{color} {adjective} {singular}"),
            _with_article(article, f"{adjective} {color} {singular}"),
            f"{color} {adjective} {plural}",
            f"a photo of {_with_article(article, f'{adjective} {color} {singular}')}",
        ]
        if paired:
            texts.append(f"a pair of {adjective} {color} {plural}")
    noun = _PATTERN_NOUN[pattern]
    texts += [
        _with_article(article, f"{color} {singular} with {noun}"),
        f"{color} {plural} with {noun}",
        _with_article(article, f"{singular} in {color} with {noun}"),
    ]
    return list(dict.fromkeys(texts))


def _noun_and_article(category: str, *, plural: bool) -> tuple[str, str]:
    return (_PLURAL[category], "") if plural else (category, "a")


def _with_article(article: str, phrase: str) -> str:
    if not article:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# ----------------------------------------------------------------------------------------------
# Rendering

# Shapes in a unit box (x right, y down): polygons and ellipses filled with the pattern,
# plus "trim" drawn in a fixed contrasting tone (soles, straps, brims' bands).
_Shape = list[tuple[str, tuple[float, ...]]]
_SHAPES: dict[str, tuple[_Shape, _Shape]] = {
    "dress": (
        [
            (
                "poly",
                (
                    0.40,
                    0.04,
                    0.60,
                    0.04,
                    0.68,
                    0.10,
                    0.61,
                    0.40,
                    0.86,
                    0.96,
                    0.14,
                    0.96,
                    0.39,
                    0.40,
                    0.32,
                    0.10,
                ),
            )
        ],
        [("poly", (0.38, 0.38, 0.62, 0.38, 0.62, 0.43, 0.38, 0.43))],
    ),
    "t-shirt": (
        [
            (
                "poly",
                (
                    0.36,
                    0.10,
                    0.44,
                    0.16,
                    0.56,
                    0.16,
                    0.64,
                    0.10,
                    0.96,
                    0.28,
                    0.86,
                    0.46,
                    0.76,
                    0.40,
                    0.76,
                    0.92,
                    0.24,
                    0.92,
                    0.24,
                    0.40,
                    0.14,
                    0.46,
                    0.04,
                    0.28,
                ),
            )
        ],
        [],
    ),
    "trousers": (
        [("poly", (0.27, 0.04, 0.73, 0.04, 0.80, 0.96, 0.57, 0.96, 0.50, 0.34, 0.43, 0.96, 0.20, 0.96))],
        [("poly", (0.27, 0.04, 0.73, 0.04, 0.73, 0.09, 0.27, 0.09))],
    ),
    "shorts": (
        [("poly", (0.18, 0.22, 0.82, 0.22, 0.92, 0.72, 0.56, 0.78, 0.50, 0.46, 0.44, 0.78, 0.08, 0.72))],
        [("poly", (0.18, 0.22, 0.82, 0.22, 0.82, 0.28, 0.18, 0.28))],
    ),
    "skirt": (
        [("poly", (0.34, 0.16, 0.66, 0.16, 0.90, 0.84, 0.10, 0.84))],
        [("poly", (0.33, 0.13, 0.67, 0.13, 0.67, 0.20, 0.33, 0.20))],
    ),
    "sneaker": (
        [
            (
                "poly",
                (
                    0.04,
                    0.54,
                    0.30,
                    0.50,
                    0.46,
                    0.34,
                    0.62,
                    0.34,
                    0.70,
                    0.50,
                    0.96,
                    0.60,
                    0.96,
                    0.72,
                    0.04,
                    0.72,
                ),
            )
        ],
        [("poly", (0.03, 0.72, 0.97, 0.72, 0.97, 0.80, 0.03, 0.80))],
    ),
    "boot": (
        [("poly", (0.30, 0.06, 0.58, 0.06, 0.60, 0.56, 0.90, 0.68, 0.92, 0.84, 0.30, 0.84))],
        [("poly", (0.29, 0.84, 0.93, 0.84, 0.93, 0.92, 0.29, 0.92))],
    ),
    "handbag": (
        [("poly", (0.14, 0.40, 0.86, 0.40, 0.92, 0.92, 0.08, 0.92))],
        [("arc", (0.30, 0.14, 0.70, 0.66))],
    ),
    "hat": (
        [("ellipse", (0.04, 0.56, 0.96, 0.80)), ("poly", (0.28, 0.22, 0.72, 0.22, 0.78, 0.68, 0.22, 0.68))],
        [("poly", (0.25, 0.55, 0.75, 0.55, 0.76, 0.62, 0.24, 0.62))],
    ),
    "scarf": (
        [
            (
                "poly",
                (
                    0.14,
                    0.14,
                    0.86,
                    0.14,
                    0.86,
                    0.32,
                    0.62,
                    0.32,
                    0.64,
                    0.90,
                    0.44,
                    0.90,
                    0.42,
                    0.32,
                    0.14,
                    0.32,
                ),
            )
        ],
        [("fringe", (0.44, 0.90, 0.64, 0.97))],
    ),
}


def render_product(product: Product, image_size: int = 128, view: int = 0) -> Image.Image:
    """The product's picture: an RGB image of ``image_size`` pixels a side.

    ``view`` 1, 2... are more photos of the same product (same category, color and pattern,
    another placement, shade and backdrop), as a shop shows several; view 0 is the catalog's
    first picture and does not depend on the others.
    """
    return _render(product, image_size, view)[0]


def render_cutout(product: Product, image_size: int = 128) -> Image.Image:
    """The product alone, as a shop's cut-out: an RGBA image, opaque exactly where
    `render_product` draws the product (same pixels there), fully transparent elsewhere,
    with black under the transparency as many PNG writers leave it."""
    image, silhouette = _render(product, image_size)
    cutout = Image.new("RGBA", image.size, (0, 0, 0, 0))
    cutout.paste(image, (0, 0), silhouette)
    cutout.putalpha(silhouette)
    return cutout


def _render(product: Product, size: int, view: int = 0) -> tuple[Image.Image, Image.Image]:
    """(the RGB picture, an L mask that is 255 on every pixel the product's drawing touched)."""
    key = [product.seed, 2, product.index] + ([view] if view else [])
    rng = np.random.default_rng(key)
    image = _background(rng, size)

    # Where the product sits: a box of 60-92% of the image, shifted, sometimes mirrored.
    scale = rng.uniform(0.60, 0.92)
    box = scale * size
    x0 = (size - box) / 2 + rng.uniform(-0.5, 0.5) * (size - box)
    y0 = (size - box) / 2 + rng.uniform(-0.5, 0.5) * (size - box)
    mirror = bool(rng.integers(2))

    def to_pixels(coords: tuple[float, ...]) -> list[float]:
        out = []
        for i in range(0, len(coords), 2):
            u = 1.0 - coords[i] if mirror else coords[i]
            out += [x0 + u * box, y0 + coords[i + 1] * box]
        return out

    base = _jittered_color(COLORS[product.color], rng)
    texture = _pattern_texture(product.pattern, base, rng, size)
    body, trim = _SHAPES[product.category]

    mask = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask)
    for kind, coords in body:
        _draw_primitive(mask_draw, kind, to_pixels(coords), fill=255)
    image.paste(texture, (0, 0), mask)

    # Every stroke below is drawn twice: in its colour on the image, in 255 on the mask.
    draw = ImageDraw.Draw(image)
    outline = tuple(int(c * 0.45) for c in base) if sum(base) > 150 else (90, 90, 90)
    line = max(1, round(size / 96))
    for kind, coords in body:
        _draw_primitive(draw, kind, to_pixels(coords), outline=outline, width=line)
        _draw_primitive(mask_draw, kind, to_pixels(coords), outline=255, width=line)
    trim_color = (235, 235, 230) if sum(base) < 450 else (60, 60, 60)
    for kind, coords in trim:
        _draw_primitive(draw, kind, to_pixels(coords), fill=trim_color, outline=outline, width=line, box=box)
        _draw_primitive(mask_draw, kind, to_pixels(coords), fill=255, outline=255, width=line, box=box)
    return image, mask


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A light, slightly tinted backdrop, flat or with a vertical gradient, and a floor shadow."""
    level = rng.uniform(180, 240)
    tint = rng.uniform(-14, 14, size=3)
    top = np.clip(level + tint, 0, 255)
    bottom = np.clip(top + rng.uniform(-25, 25) * bool(rng.integers(2)), 0, 255)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    pixels = np.broadcast_to(pixels, (size, size, 3)).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    shade = tuple(int(c * 0.88) for c in ((top + bottom) / 2))
    y = rng.uniform(0.80, 0.94) * size
    ImageDraw.Draw(image).ellipse((0.15 * size, y, 0.85 * size, y + 0.06 * size), fill=shade)
    return image


def _jittered_color(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    factor = rng.uniform(0.84, 1.10)
    noise = rng.uniform(-10, 10, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) * factor + noise, 0, 255))  # type: ignore[return-value]


def _pattern_texture(
    pattern: str, base: tuple[int, int, int], rng: np.random.Generator, size: int
) -> Image.Image:
    """A full-size image of the product's fabric: base color plus the pattern in a second tone."""
    texture = Image.new("RGB", (size, size), base)
    if pattern == "plain":
        return texture
    draw = ImageDraw.Draw(texture)
    light = sum(base) > 450
    second = (50, 50, 55) if light else (245, 245, 240)
    unit = size / 128
    if pattern == "striped":
        period = rng.uniform(9, 15) * unit
        width = period * rng.uniform(0.35, 0.5)
        offset = rng.uniform(0, period)
        direction = int(rng.integers(3))  # horizontal, vertical, diagonal
        t = -size + offset
        while t < 2 * size:
            if direction == 0:
                draw.rectangle((0, t, size, t + width), fill=second)
            elif direction == 1:
                draw.rectangle((t, 0, t + width, size), fill=second)
            else:
                draw.polygon((t, 0, t + width, 0, t + width - size, size, t - size, size), fill=second)
            t += period
    elif pattern == "dotted":
        spacing = rng.uniform(9, 14) * unit
        radius = spacing * rng.uniform(0.2, 0.3)
        ox, oy = rng.uniform(0, spacing, size=2)
        for row, y in enumerate(np.arange(oy - spacing, size + spacing, spacing)):
            shift = spacing / 2 if row % 2 else 0.0
            for x in np.arange(ox - spacing + shift, size + spacing, spacing):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=second)
    elif pattern == "checked":
        cell = rng.uniform(7, 12) * unit
        dark = tuple(int(c * 0.55) for c in base) if not light else (120, 120, 125)
        ox, oy = rng.uniform(0, cell, size=2)
        for i, y in enumerate(np.arange(oy - cell, size, cell)):
            for j, x in enumerate(np.arange(ox - cell, size, cell)):
                if (i + j) % 2:
                    draw.rectangle((x, y, x + cell, y + cell), fill=dark)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return texture


def _draw_primitive(draw: ImageDraw.ImageDraw, kind: str, xy: list[float], box: float = 0.0, **style) -> None:
    fill, outline, width = style.get("fill"), style.get("outline"), style.get("width", 1)
    if kind == "poly":
        draw.polygon(xy, fill=fill, outline=outline, width=width)
    elif kind == "ellipse":
        left, top, right, bottom = min(xy[0], xy[2]), xy[1], max(xy[0], xy[2]), xy[3]
        draw.ellipse((left, top, right, bottom), fill=fill, outline=outline, width=width)
    elif kind == "arc":  # a handle: a thick half ring
        left, top, right, bottom = min(xy[0], xy[2]), xy[1], max(xy[0], xy[2]), xy[3]
        draw.arc((left, top, right, bottom), 180, 360, fill=outline, width=max(2, round(box * 0.06)))
    elif kind == "fringe":
        left, top, right, bottom = min(xy[0], xy[2]), xy[1], max(xy[0], xy[2]), xy[3]
        for x in np.linspace(left, right, 6):
            draw.line((x, top, x, bottom), fill=outline, width=width)
    else:
        raise ValueError(f"unknown primitive {kind!r}")


# ----------------------------------------------------------------------------------------------
# Writing catalogs

CSV_COLUMNS = ("id", "image", "title", "category", "color", "pattern", "price", "brand", "sku", "description")
#: The declared schema of a catalog with tags: prices are US dollars, tags a list field
#: (a tag cell holding one tag would otherwise be inferred as a keyword).
SHOP_SCHEMA = {"price": {"type": "float", "currency": "USD"}, "tags": "keywords"}
#: Tags by season (from the category) and a few a shop adds by hand; append, never reorder.
_SEASON = {
    "dress": "summer",
    "t-shirt": "summer",
    "shorts": "summer",
    "skirt": "summer",
    "hat": "summer",
    "sneaker": "all-season",
    "handbag": "all-season",
    "trousers": "winter",
    "boot": "winter",
    "scarf": "winter",
}
_SHOP_TAGS = ("new", "sale", "bestseller", "eco")
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png"}


def image_count(product: Product, images_per_product: int) -> int:
    """How many photos the product has in a catalog of up to ``images_per_product`` per product:
    1, 2, ... ``images_per_product`` in turn, so a catalog mixes products of one and of several."""
    return 1 + product.index % max(1, images_per_product)


def tags_for(product: Product) -> list[str]:
    """The product's tags: its season, and zero to two shop tags drawn from its own stream."""
    rng = np.random.default_rng([product.seed, 5, product.index])
    extra = rng.permutation(len(_SHOP_TAGS))[: int(rng.integers(3))]
    return [_SEASON[product.category], *(_SHOP_TAGS[int(i)] for i in sorted(extra))]


def generate_catalog(
    out_dir: Path,
    *,
    n_products: int = 300,
    seed: int = 0,
    image_size: int = 128,
    image_format: str = "jpeg",
    images_per_product: int = 1,
    tags: bool = False,
) -> Path:
    """Renders ``n_products`` images into ``out_dir/images`` and writes ``out_dir/catalog.csv``.

    Returns the CSV path. Its ``image`` column holds paths relative to the CSV. With
    ``images_per_product`` above 1, products have 1, 2, ... that many photos in turn (see
    :func:`image_count`), the further ones in an ``images`` column (``a.jpg|b.jpg``); with
    ``tags``, a ``tags`` column (``summer|sale``; ingest it with :data:`SHOP_SCHEMA`). The
    defaults write the catalog every other test and the demo model were made with.
    """
    if image_format not in _EXTENSIONS:
        raise ValueError(f"image_format must be one of {sorted(_EXTENSIONS)}, got {image_format!r}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "catalog.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        extra_columns = (("images",) if images_per_product > 1 else ()) + (("tags",) if tags else ())
        writer.writerow(CSV_COLUMNS + extra_columns)
        for product in make_products(n_products, seed):
            paths = []
            for view in range(image_count(product, images_per_product)):
                suffix = f"-{view + 1}" if view else ""
                relative = f"images/{product.id}{suffix}{_EXTENSIONS[image_format]}"
                image = render_product(product, image_size, view)
                if image_format == "jpeg":
                    image.save(out_dir / relative, format="JPEG", quality=90)
                else:
                    image.save(out_dir / relative, format="PNG")
                paths.append(relative)
            extras = (["|".join(paths[1:])] if images_per_product > 1 else []) + (
                ["|".join(tags_for(product))] if tags else []
            )
            writer.writerow(
                (
                    product.id,
                    paths[0],
                    product.title,
                    product.category,
                    product.color,
                    product.pattern,
                    f"{product.price:.2f}",
                    product.brand,
                    product.sku,
                    product.description,
                    *extras,
                )
            )
    return csv_path


def default_cache_dir() -> Path:
    """``$CLIPSEARCH_HOME`` if set, else ``~/.cache/clipsearch``."""
    home = os.environ.get("CLIPSEARCH_HOME")
    return Path(home) if home else Path.home() / ".cache" / "clipsearch"


def ensure_demo_catalog(
    cache_dir: Path | None = None,
    *,
    n_products: int = 300,
    seed: int = 0,
    images_per_product: int = 1,
    tags: bool = False,
) -> Path:
    """The demo catalog's CSV path, generating the catalog on first use.

    The catalog lives in ``cache_dir/demo-catalog-v{version}-n{n}-s{seed}``. It is rendered into
    a temporary sibling directory and renamed into place only when complete, so an interrupted
    run never leaves a partial catalog behind that a later call would reuse.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    variant = (f"-i{images_per_product}" if images_per_product > 1 else "") + ("-tags" if tags else "")
    target = base / f"demo-catalog-v{GENERATOR_VERSION}-n{n_products}-s{seed}{variant}"
    csv_path = target / "catalog.csv"
    if csv_path.is_file():
        return csv_path
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=base))
    try:
        generate_catalog(
            staging, n_products=n_products, seed=seed, images_per_product=images_per_product, tags=tags
        )
        try:
            staging.rename(target)
        except OSError:
            if not csv_path.is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return csv_path
