"""``clipsearch aliases list|set|delete``: names that point at a collection and switch atomically."""

from __future__ import annotations

import argparse
import json

from clipsearch.apps.cli.common import add_addresses


def add(commands: argparse._SubParsersAction) -> None:
    aliases = commands.add_parser("aliases", help="list, set (create or switch) or delete aliases")
    action = aliases.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = action.add_parser("list", help="every alias, its collection and the previous one")
    point = action.add_parser("set", help="point an alias at a collection (atomic switch)")
    point.add_argument("alias")
    point.add_argument("collection")
    delete = action.add_parser("delete", help="delete an alias (its collection stays)")
    delete.add_argument("alias")
    for sub in (listing, point, delete):
        add_addresses(sub, encoder=False)
        sub.set_defaults(handler=_aliases)


def _aliases(args: argparse.Namespace) -> int:
    from clipsearch.index_client import IndexClient

    with IndexClient(args.index, timeout_s=args.timeout) as index:
        if args.action == "list":
            print(json.dumps([vars(a) for a in index.list_aliases()], indent=2))
        elif args.action == "set":
            previous = index.set_alias(args.alias, args.collection)
            was = f" (was {previous})" if previous else " (new)"
            print(f"{args.alias} -> {args.collection}{was}")
        else:
            index.delete_alias(args.alias)
            print(f"deleted alias {args.alias}")
    return 0
