"""``clipsearch collections list|describe|drop|add-field``."""

from __future__ import annotations

import argparse
import json
import sys

from clipsearch.apps.cli.common import add_addresses
from clipsearch.apps.cli.items import confirm


def add(commands: argparse._SubParsersAction) -> None:
    collections = commands.add_parser("collections", help="list, describe or drop collections; add fields")
    action = collections.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = action.add_parser("list", help="all collections")
    describe = action.add_parser("describe", help="one collection, with its schema")
    describe.add_argument("name")
    drop = action.add_parser("drop", help="delete a collection and its data (asks first)")
    drop.add_argument("name")
    drop.add_argument("--yes", action="store_true", help="do not ask")
    add_field = action.add_parser(
        "add-field", help="add a metadata field to a collection's schema (a type never changes)"
    )
    add_field.add_argument("name", help="the collection")
    add_field.add_argument("field", help="the field's name")
    add_field.add_argument("type", help="keyword, text, integer, float, boolean or keywords")
    add_field.add_argument("--case-insensitive", action="store_true", help="keyword(s): filters ignore case")
    add_field.add_argument("--currency", default="", help="float/integer holding money: ISO 4217 code (USD)")
    for sub in (listing, describe, drop, add_field):
        add_addresses(sub, encoder=False)
        sub.set_defaults(handler=_collections)


def _collections(args: argparse.Namespace) -> int:
    from clipsearch.index_client import IndexClient
    from clipsearch.schema import Field, field_type

    with IndexClient(args.index, timeout_s=args.timeout) as index:
        if args.action == "list":
            print(json.dumps([c.to_dict() for c in index.list_collections()], indent=2))
        elif args.action == "describe":
            print(json.dumps(index.describe_collection(args.name).to_dict(), indent=2))
        elif args.action == "add-field":
            declared = Field(
                args.field,
                field_type(args.type, "type"),
                case_insensitive=args.case_insensitive,
                currency=args.currency.upper(),
            )
            info = index.add_fields(args.name, [declared])
            assert info.schema is not None
            print(f"{args.name}: schema\n{info.schema.describe()}")
        else:
            if not args.yes:
                count = index.describe_collection(args.name).item_count
                if not confirm(f"drop collection {args.name!r} and its {count} items?"):
                    print("nothing dropped", file=sys.stderr)
                    return 1
            index.drop_collection(args.name)
            print(f"dropped {args.name}")
    return 0
