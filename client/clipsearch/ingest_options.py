"""The options of an ingest, defined once (standard library only: the CLI's flags come from them)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clipsearch._options import Options, float_in, int_in, option, optional_text
from clipsearch.errors import InvalidArgumentError
from clipsearch.schema import Schema


def schema_argument(text: str) -> Schema | None:
    """A schema as JSON, inline or in a file: ``{"price": {"type": "float", "currency": "USD"}}``."""
    if not text.strip():
        return None
    source = text if text.lstrip().startswith("{") else None
    if source is None:
        try:
            source = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise argparse.ArgumentTypeError(
                f"cannot read schema file {text}: {error.strerror or error}"
            ) from None
    try:
        return Schema.from_dict(json.loads(source))
    except (json.JSONDecodeError, InvalidArgumentError) as error:
        raise argparse.ArgumentTypeError(f"not a schema ({error})") from None


@dataclass(frozen=True)
class IngestOptions(Options):
    """How an ingest runs: the one definition behind ``SearchClient.ingest`` (sync and asyncio),
    ``clipsearch ingest`` (its flags come from these fields) and the gateway's Ingest."""

    batch_size: int = option(32, "images per encode request", parse=int_in(1, 1024))
    workers: int = option(3, "batches in flight at once (upserts overlapping encoding)", parse=int_in(1, 64))
    resume: bool = option(
        True, "re-embed items already stored unchanged (default: skip them)", switch=True, flag="--no-resume"
    )
    schema: Schema | None = option(
        None,
        'field types, as JSON or a JSON file: {"price": {"type": "float", "currency": "USD"}, '
        '"tags": "keywords"}; columns it leaves out are inferred from the first rows',
        parse=schema_argument,
    )
    image_root: str | None = option(
        None, "folder relative image paths are under (default: the catalog's folder)", parse=optional_text
    )
    list_separator: str = option("|", "separator of a keywords cell (a|b|c)")
    fetch_workers: int = option(8, "image URLs fetched at once", parse=int_in(1, 256))
    fetch_timeout_s: float = option(10.0, "seconds one image download may take", parse=float_in(0.1, 600))
    fetch_retries: int = option(2, "retries of a download that timed out or got 429/5xx", parse=int_in(0, 10))
    max_image_bytes: int = option(
        16 * 1024 * 1024, "largest image file or download accepted", parse=int_in(1, 2**31 - 1)
    )
    text_vector: str = option(
        "",
        "also embed each product's text, from these comma-separated fields (e.g. title,description), "
        "as one more item of the product (<id>#text)",
    )
    sync: bool = option(
        False,
        "mirror the catalog: afterwards, delete the collection's items the catalog no longer has "
        "(the count is shown; refused if no row could be ingested)",
        switch=True,
    )
    dry_run: bool = option(
        False,
        "write nothing: count what would be embedded, updated, kept and (with --sync) deleted",
        switch=True,
    )


DEFAULT_OPTIONS = IngestOptions()


def ingest_options(options: IngestOptions | None, changes: dict[str, Any]) -> IngestOptions:
    """``options`` (default: the defaults) with ``changes`` applied; unknown names are a TypeError."""
    known = {field.name for field, _ in IngestOptions.declared_options()}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown ingest option {unknown[0]!r} (the options are {', '.join(sorted(known))})")
    return replace(options or IngestOptions(), **changes)
