"""Catalog ingestion: read rows, embed images in batches, upsert with metadata.

A bad row (empty id, missing file, undecodable image) is recorded in the report
and skipped; it never aborts the run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from clipsearch.catalog import CatalogRow, read_catalog
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import InvalidArgumentError
from clipsearch.index_client import IndexClient
from clipsearch.types import IngestFailure, IngestReport

_INPUT_INDEX = re.compile(r"^inputs\[(\d+)\]")

ProgressCallback = Callable[[IngestReport], None]


def ingest_catalog(
    encoder: EncoderClient,
    index: IndexClient,
    catalog: str | Path,
    *,
    collection: str,
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    report = IngestReport()
    started = time.perf_counter()
    for batch in _batched(read_catalog(catalog), batch_size):
        readable = [
            (row, data) for row, data in (_read_image(row, report) for row in batch) if data is not None
        ]
        kept, vectors = _embed_skipping_bad_images(encoder, readable, report)
        if kept:
            index.upsert(
                collection,
                [row.id for row in kept],
                vectors,
                [row.metadata for row in kept],
                model_fingerprint=encoder.last_fingerprint,
            )
            report.ingested += len(kept)
        report.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(report)
    report.seconds = time.perf_counter() - started
    return report


def _batched(rows: Iterable[CatalogRow], size: int) -> Iterator[list[CatalogRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _read_image(row: CatalogRow, report: IngestReport) -> tuple[CatalogRow, bytes | None]:
    if row.error is not None:
        report.failed.append(IngestFailure(row.row, row.id, row.error))
        return row, None
    try:
        return row, row.image_path.read_bytes()
    except OSError as error:
        report.failed.append(
            IngestFailure(row.row, row.id, f"cannot read image {row.image_path}: {error.strerror}")
        )
        return row, None


def _embed_skipping_bad_images(
    encoder: EncoderClient, pending: list[tuple[CatalogRow, bytes]], report: IngestReport
) -> tuple[list[CatalogRow], np.ndarray]:
    """Embeds the batch; an image the encoder refuses is reported and the rest retried."""
    while pending:
        try:
            vectors = encoder.embed_images([data for _, data in pending])
            return [row for row, _ in pending], vectors
        except InvalidArgumentError as error:
            match = _INPUT_INDEX.match(error.field or "")
            if match is None or int(match.group(1)) >= len(pending):
                for row, _ in pending:
                    report.failed.append(IngestFailure(row.row, row.id, error.message))
                break
            row, _ = pending.pop(int(match.group(1)))
            report.failed.append(IngestFailure(row.row, row.id, error.message))
    return [], np.zeros((0, 0), dtype=np.float32)
