"""``clipsearch ingest``: embed a catalog's images and upsert them, loudly.

The schema the rows are checked against is shown before the run (fields added, and why a
column that looks numeric is not), the summary counts failures by kind, ``--failed-rows``
writes the failed rows in the catalog's own format (fix them and ingest that file), and the
exit code is 1 when more rows failed than ``--max-failures`` allows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
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
        "--num-shards", type=int, default=None, help="shards when the collection is created (default 1)"
    )
    ingest.add_argument(
        "--index-spec",
        default=None,
        help="FAISS factory string when the collection is created (default Flat)",
    )
    ingest.add_argument(
        "--max-failures", type=int, default=0, help="exit 0 with at most this many failed rows (default 0)"
    )
    ingest.add_argument(
        "--failed-rows", type=Path, help="write the failed rows here, in the catalog's format"
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_addresses(ingest)
    ingest.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from clipsearch.ingest import count_catalog_rows
    from clipsearch.search_client import SearchClient

    total = count_catalog_rows(args.catalog)
    options = IngestOptions.from_args(args)
    with SearchClient(args.encoder, args.index, timeout_s=args.timeout) as client:
        if not options.dry_run:  # a dry run writes nothing (its collection must exist)
            client.create_collection(
                args.collection, num_shards=args.num_shards, index_spec=args.index_spec, exist_ok=True
            )
        with _progress_bar(total, enabled=not args.json) as on_progress:
            report = client.ingest(
                args.catalog, collection=args.collection, options=options, on_progress=on_progress
            )
    if args.failed_rows is not None and report.failed:
        write_failed_rows(args.catalog, args.failed_rows, [f.record for f in report.failed])
    print_ingest_report(report, as_json=args.json, failed_rows=args.failed_rows)
    if len(report.failed) > args.max_failures:
        if not args.json:
            allowed = f" (--max-failures {args.max_failures})" if args.max_failures else ""
            print(f"error: {len(report.failed)} rows failed{allowed}", file=sys.stderr)
        return 1
    return 0


def write_failed_rows(catalog: Path, out: Path, records: list[dict]) -> None:
    """The rows as they were read, in the catalog's format (CSV header kept), ready to ingest again."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if catalog.suffix.lower() == ".csv":
        from clipsearch.catalog import columns

        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns(catalog), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
    else:
        with out.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


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
