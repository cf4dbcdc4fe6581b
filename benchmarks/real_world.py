"""The "real-world files" section of `benchmarks/quality.py`: the demo catalog as shops store it.

Each variant writes every product of the catalog the way real catalogs hold images (cut-outs
on transparency with black or white stored under it, 16-bit PNGs, CMYK JPEGs, JPEGs stored
rotated with an EXIF orientation, Display P3 PNGs), ingests them into a collection of its own
through the SDK, and measures it with the definitions of `training/quality.py`. The image
queries are degraded copies of what a *person* sees for the file (a cut-out on a white page,
the rotated JPEG upright, the P3 colours in sRGB), computed from the rendering and never by
the encoder's decoder: the figure asks whether the model sees what the person sees.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import image_variants as v  # tests/encoder: the file builders the decoder's tests use
import numpy as np
from PIL import Image

from clipsearch import SearchClient
from clipsearch.apps.demo.catalog import Product, render_cutout, render_product
from clipsearch.apps.demo.training.quality import (
    StackSearch,
    measure_image_queries,
    measure_text_queries,
)


def _catalog_jpeg(product: Product) -> bytes:
    return v.jpeg(render_product(product), quality=90)  # as generate_catalog writes it


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


def _grey(product: Product) -> Image.Image:
    return render_product(product).convert("L")


@dataclass(frozen=True)
class Variant:
    name: str
    #: What the file is, for the table.
    label: str
    suffix: str
    write: Callable[[Product], bytes]
    #: The picture a person sees for the file.
    seen: Callable[[Product], Image.Image]
    #: The variant this one's figures are compared with.
    baseline: str = "plain"


VARIANTS = (
    Variant(
        "plain",
        "plain catalog: RGB JPEG q90",
        ".jpg",
        _catalog_jpeg,
        lambda p: _decoded(_catalog_jpeg(p)),
    ),
    Variant(
        "cutout-black",
        "(a) cut-out PNG, black under the transparency",
        ".png",
        lambda p: v.cutout_png(render_cutout(p), v.BLACK),
        lambda p: v.flatten(render_cutout(p), v.WHITE),
    ),
    Variant(
        "cutout-white",
        "(b) cut-out PNG, white under the transparency",
        ".png",
        lambda p: v.cutout_png(render_cutout(p), v.WHITE),
        lambda p: v.flatten(render_cutout(p), v.WHITE),
    ),
    Variant(
        "rgb16",
        "(c) 16-bit RGB PNG",
        ".png",
        lambda p: v.rgb16_png(np.asarray(render_product(p), np.uint16) * 257),
        render_product,
    ),
    Variant(
        "cmyk",
        "(d) CMYK JPEG q90 (Adobe)",
        ".jpg",
        lambda p: v.cmyk_jpeg(render_product(p), quality=90),
        render_product,
    ),
    Variant(
        "exif",
        "(e) JPEG q90 stored rotated, EXIF orientation 6 / 8",
        ".jpg",
        lambda p: v.exif_rotated_jpeg(render_product(p), 6 if p.index % 2 == 0 else 8, quality=90),
        render_product,
    ),
    Variant(
        "p3",
        "(f) Display P3 PNG with its ICC profile",
        ".png",
        lambda p: v.display_p3_png(render_product(p)),
        render_product,
    ),
    Variant(
        "grey8",
        "plain grey: 8-bit grey PNG",
        ".png",
        lambda p: v.png(_grey(p)),
        lambda p: _grey(p).convert("RGB"),
        baseline="grey8",
    ),
    Variant(
        "grey16",
        "(c') 16-bit grey PNG",
        ".png",
        lambda p: v.grey16_png(v.grey16(_grey(p))),
        lambda p: _grey(p).convert("RGB"),
        baseline="grey8",
    ),
)


@dataclass(frozen=True)
class Figures:
    pair_top1: float
    exact_top1: float
    image_top1: float
    pair_queries: int
    exact_queries: int
    trials: int
    failed: int


def write_variant(variant: Variant, products: list[Product], catalog_csv: Path, out: Path) -> Path:
    """The variant's files and a CSV like the catalog's pointing at them; returns the CSV."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    by_id = {p.id: p for p in products}
    with catalog_csv.open(newline="", encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    for row in rows:
        relative = f"images/{row['id']}{variant.suffix}"
        (out / relative).write_bytes(variant.write(by_id[row["id"]]))
        row["image"] = relative
    csv_path = out / "catalog.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def measure_variant(
    client: SearchClient,
    variant: Variant,
    products: list[Product],
    catalog_csv: Path,
    workdir: Path,
    *,
    shards: int,
    image_trials: int,
) -> Figures:
    collection = f"real-world-{variant.name}"
    csv_path = write_variant(variant, products, catalog_csv, workdir / variant.name)
    client.create_collection(collection, num_shards=shards)
    report = client.ingest(csv_path, collection=collection)
    search = StackSearch(client, collection, products)
    text = measure_text_queries(products, search.texts)
    image = measure_image_queries(products, variant.seen, search.images, trials=image_trials, seed=1)
    return Figures(
        text.pair_top1,
        text.exact_top1,
        image.top1,
        text.pair_queries,
        text.exact_queries,
        image.trials,
        len(report.failed) + len(search.mismatches),
    )


def table(results: dict[str, Figures]) -> list[str]:
    """Markdown rows: each variant's top-1 figures and their ratio to its baseline's."""
    first = results["plain"]
    lines = [
        f"| catalog files | text→image top-1, category+color ({first.pair_queries}) | ratio "
        f"| text→image top-1, +pattern ({first.exact_queries}) | ratio "
        f"| image→image top-1 ({first.trials}) | ratio | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        if variant.name not in results:
            continue
        got, base = results[variant.name], results[variant.baseline]
        cells = []
        for mine, theirs in (
            (got.pair_top1, base.pair_top1),
            (got.exact_top1, base.exact_top1),
            (got.image_top1, base.image_top1),
        ):
            same = variant.name == variant.baseline
            cells += [f"{mine:.3f}", "—" if same else f"{mine / theirs:.3f}" if theirs else "n/a"]
        lines.append(f"| {variant.label} | " + " | ".join(cells) + f" | {got.failed} |")
    return lines
