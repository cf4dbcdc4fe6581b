"""What the quality suite shares: the checkpoint under test, the catalog settings, result holders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipsearch import SearchClient
from clipsearch.apps.demo.catalog import Product
from clipsearch.apps.demo.training.quality import ImageFigures, TextFigures

REPO = Path(__file__).resolve().parents[2]
#: The committed checkpoint; $CLIPSEARCH_QUALITY_CHECKPOINT scores another (a retrained one).
CHECKPOINT = Path(
    os.environ.get("CLIPSEARCH_QUALITY_CHECKPOINT")
    or REPO / "encoder_service" / "weights" / "clipsearch-demo.pt"
)
#: A catalog seed the model never saw (it trained on 1000 and was watched on 99).
CATALOG_SEED = 7
N_PRODUCTS = 300
IMAGE_TRIALS = 150


@dataclass
class Stack:
    client: SearchClient
    catalog: Path
    products: list[Product]
    #: Ids deleted from (and then re-upserted into) the ``churned`` collection.
    churned_ids: set[str]
    #: Text figures of ``churned`` over the remaining products, while the third was deleted.
    while_deleted: TextFigures
    #: Every id the searches returned while the third was deleted.
    returned_while_deleted: set[str]


@dataclass
class Figures:
    collection: str
    text: TextFigures
    image: ImageFigures
    #: Hits whose metadata did not match their id's catalog row.
    mismatches: list[str]


def load_image(catalog: Path, product: Product) -> Image.Image:
    with Image.open(catalog.parent / "images" / f"{product.id}.jpg") as image:
        return image.convert("RGB")
