"""``clipsearch get|count|export|delete|update``: read and change a collection's items.

None of these re-encodes anything. ``delete`` and ``update`` take ids, ``--group`` (a
product: all its images) and ``--filter``; with ``--dry-run`` they only count.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clipsearch.apps.cli.common import add_addresses, json_argument


def add(commands: argparse._SubParsersAction) -> None:
    get = commands.add_parser("get", help="items by id, as JSON lines")
    get.add_argument("--collection", required=True, help="a collection or an alias")
    get.add_argument("ids", nargs="+", help="item ids")
    get.add_argument("--vectors", action="store_true", help="include the vectors")
    get.set_defaults(handler=_get)

    count = commands.add_parser("count", help="how many items (match a filter)")
    count.add_argument("--collection", required=True)
    count.add_argument("--filter", type=json_argument, help='e.g. \'{"category": "dress"}\'')
    count.set_defaults(handler=_count)

    export = commands.add_parser(
        "export", help="every item (matching a filter) as JSON lines, in id order, while writes go on"
    )
    export.add_argument("--collection", required=True)
    export.add_argument("--filter", type=json_argument)
    export.add_argument("--vectors", action="store_true", help="include the vectors")
    export.add_argument("--output", "-o", type=Path, help="write here (default: standard output)")
    export.add_argument("--page-size", type=int, default=1000, help="items per call (default 1000)")
    export.set_defaults(handler=_export)

    delete = commands.add_parser("delete", help="delete items by id, product (--group) or --filter")
    update = commands.add_parser(
        "update", help="set or remove metadata fields of items (by id, --group or --filter), no re-encoding"
    )
    for sub in (delete, update):
        sub.add_argument("--collection", required=True)
        sub.add_argument("ids", nargs="*", help="item ids")
        sub.add_argument(
            "--group", action="append", default=[], help="a product id: all its items (repeatable)"
        )
        sub.add_argument("--filter", type=json_argument, help="the items matching this filter")
        sub.add_argument("--dry-run", action="store_true", help="only count what would change")
    update.add_argument(
        "--set", type=json_argument, default={}, help="fields to set, as JSON: '{\"price\": 19.99}'"
    )
    update.add_argument("--unset", action="append", default=[], help="a field to remove (repeatable)")
    delete.add_argument("--yes", action="store_true", help="do not ask before deleting by --filter")
    delete.set_defaults(handler=_delete)
    update.set_defaults(handler=_update)
    for sub in (get, count, export, delete, update):
        add_addresses(sub, encoder=False)


def _client(args: argparse.Namespace):
    from clipsearch.index_client import IndexClient

    return IndexClient(args.index, timeout_s=args.timeout)


def _get(args: argparse.Namespace) -> int:
    with _client(args) as index:
        for item in index.get(args.collection, args.ids, include_vectors=args.vectors):
            print(json.dumps(item.to_dict(vectors=args.vectors), ensure_ascii=False))
    return 0


def _count(args: argparse.Namespace) -> int:
    with _client(args) as index:
        print(index.count(args.collection, filter=args.filter))
    return 0


def _export(args: argparse.Namespace) -> int:
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    exported = 0
    try:
        with _client(args) as index:
            for item in index.iter_items(
                args.collection, filter=args.filter, page_size=args.page_size, include_vectors=args.vectors
            ):
                out.write(json.dumps(item.to_dict(vectors=args.vectors), ensure_ascii=False) + "\n")
                exported += 1
    finally:
        if args.output:
            out.close()
    print(f"exported {exported} items", file=sys.stderr)
    return 0


def _selection(args: argparse.Namespace) -> dict:
    if not (args.ids or args.group or args.filter):
        raise SystemExit("error: name the items: ids, --group or --filter")
    return {"groups": args.group, "filter": args.filter}


def _delete(args: argparse.Namespace) -> int:
    selection = _selection(args)
    with _client(args) as index:
        if args.dry_run:
            print(f"would delete {index.delete(args.collection, args.ids, dry_run=True, **selection)} items")
            return 0
        if args.filter and not args.yes:
            count = index.delete(args.collection, args.ids, dry_run=True, **selection)
            if not confirm(f"delete {count} items of {args.collection!r}?"):
                print("nothing deleted", file=sys.stderr)
                return 1
        print(f"deleted {index.delete(args.collection, args.ids, **selection)} items")
    return 0


def _update(args: argparse.Namespace) -> int:
    selection = _selection(args)
    if not isinstance(args.set, dict):
        raise SystemExit("error: --set takes a JSON object, e.g. '{\"price\": 19.99}'")
    with _client(args) as index:
        changed = index.update_metadata(
            args.collection, args.ids, set=args.set, unset=args.unset, dry_run=args.dry_run, **selection
        )
    print(f"{'would update' if args.dry_run else 'updated'} {changed} items")
    return 0


def confirm(question: str) -> bool:
    """Asks on the terminal; refuses when there is none (scripts say --yes)."""
    if not sys.stdin.isatty():
        print(f"error: {question} needs an answer: run it from a terminal, or add --yes", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
