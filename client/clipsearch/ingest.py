"""Catalog ingestion: pipelined, bounded in memory, resumable.

Batches of rows go through a small thread pool. Each batch reads its images,
asks the index which ids already hold the same content (so a re-run skips
them), embeds the rest and upserts them. Up to ``workers`` batches run at once,
so file reads, encoding and upserts overlap and the encoder's batcher sees
concurrent requests; at most ``2 * workers`` batches are in memory.

A bad row (empty id, repeated id, missing file, an image the encoder refuses)
is recorded in the report and skipped; it never aborts the run. Errors that
concern the whole run (unknown collection, a service down past the retries)
stop it and are raised.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from clipsearch.catalog import read_catalog
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import InvalidArgumentError
from clipsearch.index_client import IndexClient
from clipsearch.types import IngestFailure, IngestReport
from clipsearch.wire import MetadataScalar

#: Metadata key holding the hash of an item's image bytes and metadata, for resuming.
CONTENT_HASH_KEY = "content_sha256"
_INPUT_INDEX = re.compile(r"^inputs\[(\d+)\]")

ProgressCallback = Callable[[IngestReport], None]


@dataclass(frozen=True)
class IngestRow:
    """One item to ingest; ``load`` returns its encoded image bytes."""

    row: int
    id: str
    metadata: dict[str, MetadataScalar]
    load: Callable[[], bytes]
    error: str | None = None


@dataclass
class _BatchResult:
    ingested: int = 0
    skipped: int = 0
    failed: list[IngestFailure] = field(default_factory=list)


def rows_from_catalog(path: str | Path) -> Iterator[IngestRow]:
    for row in read_catalog(path):
        yield IngestRow(row.row, row.id, row.metadata, row.image_path.read_bytes, row.error)


def count_catalog_rows(path: str | Path) -> int:
    """Rows in a catalog (a cheap pass without reading images), for progress ETAs."""
    return sum(1 for _ in read_catalog(path))


def ingest_catalog(
    encoder: EncoderClient,
    index: IndexClient,
    catalog: str | Path,
    *,
    collection: str,
    batch_size: int = 32,
    workers: int = 3,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    return ingest_rows(
        encoder,
        index,
        rows_from_catalog(catalog),
        collection=collection,
        batch_size=batch_size,
        workers=workers,
        resume=resume,
        on_progress=on_progress,
    )


def ingest_rows(
    encoder: EncoderClient,
    index: IndexClient,
    rows: Iterable[IngestRow],
    *,
    collection: str,
    batch_size: int = 32,
    workers: int = 3,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    report = IngestReport()
    started = time.perf_counter()
    first_seen: dict[str, int] = {}

    def merge(done: Future) -> None:
        result: _BatchResult = done.result()  # re-raises whole-run errors
        report.ingested += result.ingested
        report.skipped += result.skipped
        report.failed.extend(result.failed)
        report.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(report)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        in_flight: set[Future] = set()
        try:
            for batch in _batched(rows, batch_size):
                accepted = []
                for row in batch:
                    if row.error is None and row.id in first_seen:
                        row = IngestRow(
                            row.row, row.id, {}, row.load, f"duplicate id (row {first_seen[row.id]})"
                        )
                    elif row.error is None:
                        first_seen[row.id] = row.row
                    accepted.append(row)
                while len(in_flight) >= 2 * workers:
                    finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for done in finished:
                        merge(done)
                in_flight.add(pool.submit(_ingest_batch, encoder, index, collection, accepted, resume))
            for done in in_flight:
                merge(done)
        except BaseException:
            for pending in in_flight:
                pending.cancel()
            raise
    report.seconds = time.perf_counter() - started
    return report


def content_hash(image: bytes, metadata: dict[str, MetadataScalar]) -> str:
    digest = hashlib.sha256(image)
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _batched(rows: Iterable[IngestRow], size: int) -> Iterator[list[IngestRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _ingest_batch(
    encoder: EncoderClient, index: IndexClient, collection: str, batch: list[IngestRow], resume: bool
) -> _BatchResult:
    result = _BatchResult()
    loaded: list[tuple[IngestRow, bytes, dict[str, MetadataScalar]]] = []
    for row in batch:
        if row.error is not None:
            result.failed.append(IngestFailure(row.row, row.id, row.error))
            continue
        try:
            image = row.load()
        except OSError as error:
            result.failed.append(
                IngestFailure(row.row, row.id, f"cannot read image: {error.strerror or error}")
            )
            continue
        metadata = {**row.metadata, CONTENT_HASH_KEY: content_hash(image, row.metadata)}
        loaded.append((row, image, metadata))

    if resume and loaded:
        stored = index.get(collection, [row.id for row, _, _ in loaded], missing_ok=True)
        stored_hashes = {item.id: item.metadata.get(CONTENT_HASH_KEY) for item in stored}
        changed = [entry for entry in loaded if stored_hashes.get(entry[0].id) != entry[2][CONTENT_HASH_KEY]]
        result.skipped = len(loaded) - len(changed)
        loaded = changed

    while loaded:
        try:
            vectors = encoder.embed_images([image for _, image, _ in loaded])
        except InvalidArgumentError as error:
            match = _INPUT_INDEX.match(error.field or "")
            if match is None or int(match.group(1)) >= len(loaded):
                raise
            row, _, _ = loaded.pop(int(match.group(1)))
            result.failed.append(IngestFailure(row.row, row.id, error.message))
            continue
        index.upsert(
            collection,
            [row.id for row, _, _ in loaded],
            vectors,
            [metadata for _, _, metadata in loaded],
            model_fingerprint=encoder.last_fingerprint,
        )
        result.ingested = len(loaded)
        break
    return result
