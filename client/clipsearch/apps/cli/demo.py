"""``clipsearch demo-catalog``: render the synthetic demo catalog (Pillow and numpy only)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo-catalog", help="render the synthetic demo catalog")
    demo.add_argument("out_dir", type=Path)
    demo.add_argument("--products", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--photos",
        type=int,
        default=1,
        metavar="N",
        help="up to N photos per product (1, 2 ... N in turn), the further ones in an 'images' column",
    )
    demo.add_argument(
        "--tags",
        action="store_true",
        help="add a 'tags' column (ingest with --schema '{\"tags\": \"keywords\"}')",
    )
    demo.set_defaults(handler=_demo_catalog)


def _demo_catalog(args: argparse.Namespace) -> int:
    from clipsearch.apps.demo.catalog import generate_catalog

    path = generate_catalog(
        args.out_dir, n_products=args.products, seed=args.seed, images_per_product=args.photos, tags=args.tags
    )
    print(path)
    return 0
