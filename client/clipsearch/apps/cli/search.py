"""``clipsearch search``: a text or image query against a collection."""

from __future__ import annotations

import argparse
import json

from clipsearch.apps.cli.common import add_addresses, existing_file, json_argument
from clipsearch.apps.output import format_hits


def add(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser("search", help="search a collection by text or image")
    search.add_argument("--collection", required=True)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a description, e.g. 'a red dress'")
    query.add_argument("--image", type=existing_file, help="path of a query image")
    search.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    search.add_argument("--offset", type=int, default=0, help="skip this many best hits (pagination)")
    search.add_argument(
        "--filter", type=json_argument, help='metadata filter as JSON, e.g. \'{"price": {"lt": 50}}\''
    )
    search.add_argument(
        "--mode",
        choices=("auto", "vector", "keyword", "hybrid"),
        default="auto",
        help="auto (default): hybrid for --text (the CLIP match fused with the words matched in "
        "the text and keyword fields: SKUs, brands, typos), vector for --image; keyword needs no encoder",
    )
    search.add_argument(
        "--fusion", choices=("weighted", "rrf"), help="hybrid: how the two lists fuse (default weighted)"
    )
    search.add_argument("--vector-weight", type=float, help="hybrid: weight of the vector side (default 1)")
    search.add_argument("--keyword-weight", type=float, help="hybrid: weight of the keyword side (default 1)")
    search.add_argument(
        "--explain", action="store_true", help="show why each hit ranks: both sides' scores, words matched"
    )
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    add_addresses(search)
    search.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from clipsearch.search_client import SearchClient
    from clipsearch.types import HybridOptions

    options = {
        "collection": args.collection,
        "k": args.k,
        "filter": args.filter,
        "offset": args.offset,
        "mode": args.mode,
        "explain": args.explain,
    }
    if args.fusion or args.vector_weight is not None or args.keyword_weight is not None:
        options["hybrid"] = HybridOptions(
            fusion=args.fusion or "weighted",
            vector_weight=args.vector_weight,
            keyword_weight=args.keyword_weight,
        )
    with SearchClient(args.encoder, args.index, timeout_s=args.timeout) as client:
        if args.text is not None:
            hits = client.search_text(args.text, **options)
        else:
            hits = client.search_image(args.image, **options)
    if args.json:
        print(json.dumps({"hits": [hit.to_dict() for hit in hits]}))
    else:
        print(format_hits(hits, explain=args.explain))
    return 0
