"""The options of an ingest, defined once (standard library only: the CLI's flags come from them)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from clipsearch._options import Options, int_in, option


@dataclass(frozen=True)
class IngestOptions(Options):
    """How an ingest runs: the one definition behind ``SearchClient.ingest`` (sync and asyncio),
    ``clipsearch ingest`` (its flags come from these fields) and the gateway's Ingest."""

    batch_size: int = option(32, "images per encode request", parse=int_in(1, 1024))
    workers: int = option(3, "batches in flight at once (upserts overlapping encoding)", parse=int_in(1, 64))
    resume: bool = option(
        True, "re-embed items already stored unchanged (default: skip them)", switch=True, flag="--no-resume"
    )


DEFAULT_OPTIONS = IngestOptions()


def ingest_options(options: IngestOptions | None, changes: dict[str, Any]) -> IngestOptions:
    """``options`` (default: the defaults) with ``changes`` applied; unknown names are a TypeError."""
    known = {field.name for field, _ in IngestOptions.declared_options()}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown ingest option {unknown[0]!r} (the options are {', '.join(sorted(known))})")
    return replace(options or IngestOptions(), **changes)
