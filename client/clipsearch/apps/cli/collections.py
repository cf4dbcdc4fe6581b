"""``clipsearch collections list|describe|drop``."""

from __future__ import annotations

import argparse
import json

from clipsearch.apps.cli.common import add_addresses


def add(commands: argparse._SubParsersAction) -> None:
    collections = commands.add_parser("collections", help="list, describe or drop collections")
    action = collections.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = action.add_parser("list", help="all collections")
    describe = action.add_parser("describe", help="one collection")
    describe.add_argument("name")
    drop = action.add_parser("drop", help="delete a collection and its data")
    drop.add_argument("name")
    for sub in (listing, describe, drop):
        add_addresses(sub, encoder=False)
        sub.set_defaults(handler=_collections)


def _collections(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from clipsearch.index_client import IndexClient

    with IndexClient(args.index, timeout_s=args.timeout) as index:
        if args.action == "list":
            print(json.dumps([asdict(c) for c in index.list_collections()], indent=2))
        elif args.action == "describe":
            print(json.dumps(asdict(index.describe_collection(args.name)), indent=2))
        else:
            index.drop_collection(args.name)
            print(f"dropped {args.name}")
    return 0
