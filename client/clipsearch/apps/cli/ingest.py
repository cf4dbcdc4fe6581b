"""``clipsearch ingest``: embed a catalog's images and upsert them, with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from clipsearch.apps.cli.common import add_addresses
from clipsearch.apps.output import print_ingest_report
from clipsearch.ingest_options import IngestOptions


def add(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser("ingest", help="embed a catalog's images and upsert them")
    ingest.add_argument("catalog", type=Path, help="CSV or JSONL with id, image and metadata columns")
    ingest.add_argument("--collection", required=True)
    IngestOptions.add_arguments(ingest)
    ingest.add_argument(
        "--num-shards", type=int, default=1, help="when the collection is created (default 1)"
    )
    ingest.add_argument(
        "--index-spec", default="Flat", help="FAISS factory string when created (default Flat)"
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_addresses(ingest)
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
                options=IngestOptions.from_args(args),
                on_progress=on_progress,
            )
    print_ingest_report(report, as_json=args.json)
    return 0


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
