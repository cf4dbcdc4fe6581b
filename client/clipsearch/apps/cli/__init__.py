"""The ``clipsearch`` command.

Server subcommands import their service packages lazily, so the SDK-only
install (no torch, no faiss) can still run ``search``, ``ingest`` and ``health``.
Service addresses default to ``$CLIPSEARCH_ENCODER`` / ``$CLIPSEARCH_INDEX``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:
    from clipsearch.types import IngestReport


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ClipsearchError as error:
        where = f" ({error.field})" if error.field else ""
        print(f"error: {error.code.name}: {error.message}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipsearch", description="Multimodal product search over gRPC.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_ingest(commands)
    _add_search(commands)
    _add_collections(commands)
    _add_health(commands)
    _add_loadtest(commands)
    _add_demo_catalog(commands)
    _add_cluster(commands)
    _add_bulk_ingest(commands)
    _add_ui(commands)
    return parser


def _add_addresses(parser: argparse.ArgumentParser, *, encoder: bool = True, index: bool = True) -> None:
    if encoder:
        parser.add_argument("--encoder", metavar="HOST:PORT", help="encoder address ($CLIPSEARCH_ENCODER)")
    if index:
        parser.add_argument("--index", metavar="HOST:PORT", help="index address ($CLIPSEARCH_INDEX)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")


# -- serve -----------------------------------------------------------------------------------


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run a server")
    which = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    # Each service owns its flags; its settings module needs only the stdlib.
    from clipsearch.apps.gateway.settings import GatewaySettings
    from encoder_service.settings import EncoderSettings
    from index_service.settings import IndexSettings

    encoder = which.add_parser("encoder", help="the CLIP encoder service")
    EncoderSettings.add_arguments(encoder)
    encoder.set_defaults(handler=_serve_encoder)
    index = which.add_parser("index", help="the FAISS index service")
    IndexSettings.add_arguments(index)
    index.set_defaults(handler=_serve_index)
    gateway = which.add_parser(
        "gateway", help="SearchService: the composed calls for other-language backends"
    )
    GatewaySettings.add_arguments(gateway)
    gateway.set_defaults(handler=_serve_gateway)


def _serve_encoder(args: argparse.Namespace) -> int:
    from encoder_service.server import run
    from encoder_service.settings import EncoderSettings

    return run(EncoderSettings.from_args(args))


def _serve_index(args: argparse.Namespace) -> int:
    from index_service.server import run
    from index_service.settings import IndexSettings

    return run(IndexSettings.from_args(args))


def _serve_gateway(args: argparse.Namespace) -> int:
    from clipsearch.apps.gateway.server import run
    from clipsearch.apps.gateway.settings import GatewaySettings

    return run(GatewaySettings.from_args(args))


# -- ingest ----------------------------------------------------------------------------------


def _add_ingest(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser("ingest", help="embed a catalog's images and upsert them")
    ingest.add_argument("catalog", type=Path, help="CSV or JSONL with id, image and metadata columns")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("--batch-size", type=int, default=32, help="images per encode request (default 32)")
    ingest.add_argument("--workers", type=int, default=3, help="batches in flight at once (default 3)")
    ingest.add_argument(
        "--no-resume", dest="resume", action="store_false", help="re-embed items already stored unchanged"
    )
    ingest.add_argument(
        "--num-shards", type=int, default=1, help="when the collection is created (default 1)"
    )
    ingest.add_argument(
        "--index-spec", default="Flat", help="FAISS factory string when created (default Flat)"
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_addresses(ingest)
    ingest.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from clipsearch.ingest import count_catalog_rows
    from clipsearch.search_client import SearchClient

    total = count_catalog_rows(args.catalog)
    with SearchClient(args.encoder, args.index, timeout_s=args.timeout) as client:
        client.create_collection(
            args.collection, num_shards=args.num_shards, index_spec=args.index_spec, exist_ok=True
        )
        with _progress_bar(total, enabled=not args.json) as on_progress:
            report = client.ingest(
                args.catalog,
                collection=args.collection,
                batch_size=args.batch_size,
                workers=args.workers,
                resume=args.resume,
                on_progress=on_progress,
            )
    print_ingest_report(report, as_json=args.json)
    return 0


def print_ingest_report(report: IngestReport, *, as_json: bool, where: str = "", **extra: object) -> None:
    """The summary of ``ingest`` and ``bulk-ingest``: a line per failure, or one JSON object."""
    failures = [{"row": f.row, "id": f.id, "reason": f.reason} for f in report.failed]
    if as_json:
        summary = {"ingested": report.ingested, "skipped": report.skipped, "failed": failures}
        print(json.dumps({**summary, "seconds": round(report.seconds, 3), **extra}))
        return
    print(
        f"ingested {report.ingested}, skipped {report.skipped} (unchanged), failed {len(failures)} "
        f"in {report.seconds:.1f}s ({report.rate:.1f} items/s){where}"
    )
    for failure in failures:
        print(f"  row {failure['row']} id={failure['id']!r}: {failure['reason']}")


@contextlib.contextmanager
def _progress_bar(total: int, *, enabled: bool):
    """A tqdm bar (rate, ETA) fed by the ingest progress callback; a no-op when disabled."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="item", desc="ingest", file=sys.stderr) as bar:

        def on_progress(report) -> None:
            bar.update(report.ingested + report.skipped + len(report.failed) - bar.n)

        yield on_progress


# -- search ----------------------------------------------------------------------------------


def _add_search(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser("search", help="search a collection by text or image")
    search.add_argument("--collection", required=True)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a description, e.g. 'a red dress'")
    query.add_argument("--image", type=Path, help="path of a query image")
    search.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    search.add_argument("--offset", type=int, default=0, help="skip this many best hits (pagination)")
    search.add_argument(
        "--filter", type=json.loads, help='metadata filter as JSON, e.g. \'{"price": {"lt": 50}}\''
    )
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    _add_addresses(search)
    search.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from clipsearch.search_client import SearchClient

    with SearchClient(args.encoder, args.index, timeout_s=args.timeout) as client:
        options = {"collection": args.collection, "k": args.k, "filter": args.filter, "offset": args.offset}
        if args.text is not None:
            hits = client.search_text(args.text, **options)
        else:
            hits = client.search_image(args.image, **options)
    if args.json:
        print(json.dumps({"hits": [hit.to_dict() for hit in hits]}))
    else:
        print(format_hits(hits))
    return 0


def format_hits(hits) -> str:
    if not hits:
        return "(no hits)"
    lines = [f"{'rank':>4}  {'score':>7}  {'id':<16} title"]
    for rank, hit in enumerate(hits, start=1):
        title = hit.metadata.get("title", "")
        lines.append(f"{rank:>4}  {hit.score:7.4f}  {hit.id:<16} {title}")
    return "\n".join(lines)


# -- collections -----------------------------------------------------------------------------


def _add_collections(commands: argparse._SubParsersAction) -> None:
    collections = commands.add_parser("collections", help="list, describe or drop collections")
    action = collections.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = action.add_parser("list", help="all collections")
    describe = action.add_parser("describe", help="one collection")
    describe.add_argument("name")
    drop = action.add_parser("drop", help="delete a collection and its data")
    drop.add_argument("name")
    for sub in (listing, describe, drop):
        _add_addresses(sub, encoder=False)
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


# -- health ----------------------------------------------------------------------------------


def _add_health(commands: argparse._SubParsersAction) -> None:
    health = commands.add_parser("health", help="exit 0 when the given services report SERVING")
    health.add_argument("--encoder", metavar="HOST:PORT")
    health.add_argument("--index", metavar="HOST:PORT")
    health.add_argument("--gateway", metavar="HOST:PORT")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    from clipsearch.health import check_health

    given = (("encoder", args.encoder), ("index", args.index), ("gateway", args.gateway))
    targets = {name: address for name, address in given if address}
    if not targets:
        print("error: give --encoder, --index and/or --gateway", file=sys.stderr)
        return 2
    healthy = True
    for name, address in targets.items():
        status = check_health(address, timeout_s=args.timeout)
        print(f"{name} {address}: {status}")
        healthy &= status == "SERVING"
    return 0 if healthy else 1


# -- loadtest --------------------------------------------------------------------------------


def _add_loadtest(commands: argparse._SubParsersAction) -> None:
    from clipsearch.apps.loadtest.command import add_arguments

    loadtest = commands.add_parser("loadtest", help="closed- or open-loop load with a latency report")
    add_arguments(loadtest)
    _add_addresses(loadtest)
    loadtest.set_defaults(handler=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    from clipsearch.apps.loadtest.command import run

    return run(args)


# -- demo-catalog ----------------------------------------------------------------------------


def _add_cluster(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="local multi-node Ray cluster (the [ray] extra)")
    cluster.add_argument("action", choices=["up"], help="up: start it, serve the demo catalog until Ctrl-C")
    cluster.add_argument("options", nargs=argparse.REMAINDER, help="see `clipsearch cluster up --help`")
    cluster.set_defaults(handler=_cluster)


def _cluster(args: argparse.Namespace) -> int:
    from clipsearch.cluster.local import main as cluster_up  # Ray only when asked for

    return cluster_up(args.options)


def _add_bulk_ingest(commands: argparse._SubParsersAction) -> None:
    from clipsearch.apps.cli import bulk_ingest as bulk_ingest_command  # flags only: no Ray until it runs

    bulk = commands.add_parser(
        "bulk-ingest",
        help="encode a large catalog with Ray Data actors and load the index (the [ray] extra)",
    )
    bulk_ingest_command.add_arguments(bulk)
    bulk.set_defaults(handler=bulk_ingest_command.run)


def _add_demo_catalog(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo-catalog", help="render the synthetic demo catalog")
    demo.add_argument("out_dir", type=Path)
    demo.add_argument("--products", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo_catalog)


def _demo_catalog(args: argparse.Namespace) -> int:
    from clipsearch.apps.demo.catalog import generate_catalog

    print(generate_catalog(args.out_dir, n_products=args.products, seed=args.seed))
    return 0


# -- ui --------------------------------------------------------------------------------------


def _add_ui(commands: argparse._SubParsersAction) -> None:
    from clipsearch.apps.ui.settings import UISettings

    ui = commands.add_parser("ui", help="serve the visual search page (needs clipsearch[ui])")
    UISettings.add_arguments(ui)
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    from clipsearch.apps.ui.server import run
    from clipsearch.apps.ui.settings import UISettings

    return run(UISettings.from_args(args))


if __name__ == "__main__":
    sys.exit(main())
