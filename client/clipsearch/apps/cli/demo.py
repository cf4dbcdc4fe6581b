"""``clipsearch demo-catalog``: render the synthetic demo catalog (Pillow and numpy only)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo-catalog", help="render the synthetic demo catalog")
    demo.add_argument("out_dir", type=Path)
    demo.add_argument("--products", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo_catalog)


def _demo_catalog(args: argparse.Namespace) -> int:
    from clipsearch.apps.demo.catalog import generate_catalog

    print(generate_catalog(args.out_dir, n_products=args.products, seed=args.seed))
    return 0
