"""Catalog ingestion: streamed, pipelined, bounded in memory, resumable.

Images travel to the encoder over one flow-controlled ``EmbedStream``. gRPC's
request thread prepares batches as the stream makes room: it reads the images,
hashes them with their metadata, and asks the index which ids already hold that
hash (so a re-run skips them). The calling thread reads the embeddings in order
and hands each batch to a small pool of upsert threads. Reading, encoding and
upserting overlap; what is in memory is bounded by the stream's window and
``2 * workers`` pending upserts.

A bad row (empty id, repeated id, missing file, an image the encoder refuses)
is recorded in the report and skipped; it never aborts the run. Errors that
concern the whole run (unknown collection, a service down past the retries)
stop it and are raised.
"""

from __future__ import annotations

import hashlib
import json
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from clipsearch.catalog import read_catalog
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import ClipsearchError
from clipsearch.index_client import IndexClient
from clipsearch.ingest_options import DEFAULT_OPTIONS, IngestOptions
from clipsearch.types import IngestFailure, IngestReport
from clipsearch.v1 import encoder_pb2
from clipsearch.wire import MetadataValue

#: Metadata key holding the hash of an item's image bytes and metadata, for resuming.
CONTENT_HASH_KEY = "content_sha256"

ProgressCallback = Callable[[IngestReport], None]


@dataclass(frozen=True)
class IngestRow:
    """One item to ingest; ``load`` returns its encoded image bytes."""

    row: int
    id: str
    metadata: dict[str, MetadataValue]
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
    options: IngestOptions = DEFAULT_OPTIONS,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    return ingest_rows(
        encoder,
        index,
        rows_from_catalog(catalog),
        collection=collection,
        options=options,
        on_progress=on_progress,
    )


def ingest_rows(
    encoder: EncoderClient,
    index: IndexClient,
    rows: Iterable[IngestRow],
    *,
    collection: str,
    options: IngestOptions = DEFAULT_OPTIONS,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    batch_size, workers, resume = options.batch_size, options.workers, options.resume
    report = IngestReport()
    started = time.perf_counter()
    prepared: queue.Queue[_Prepared | None] = queue.Queue()
    producer_error: list[BaseException] = []

    def chunks() -> Iterator[list[encoder_pb2.EmbedInput]]:
        """Runs on gRPC's request thread, as fast as the stream accepts chunks."""
        first_seen: dict[str, int] = {}
        try:
            for batch in _batched(rows, batch_size):
                ready = _prepare(index, collection, _mark_duplicates(batch, first_seen), resume)
                prepared.put(ready)
                if ready.images:
                    yield [encoder_pb2.EmbedInput(image=image) for image in ready.images]
                    ready.images = []  # sent: keep only ids and metadata
        except BaseException as error:
            producer_error.append(error)
        finally:
            prepared.put(None)

    def merge(result: _BatchResult) -> None:
        report.ingested += result.ingested
        report.skipped += result.skipped
        report.failed.extend(result.failed)
        report.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(report)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-upsert") as pool:
        upserts: set[Future] = set()
        try:
            outcomes_by_chunk = encoder.embed_stream(chunks())
            while (ready := prepared.get()) is not None:
                if ready.rows:
                    outcomes = next(outcomes_by_chunk)
                    result = ready.result
                    kept = []
                    for (row, metadata), outcome in zip(ready.rows, outcomes, strict=True):
                        if isinstance(outcome, ClipsearchError):
                            result.failed.append(IngestFailure(row.row, row.id, outcome.message))
                        else:
                            kept.append((row.id, metadata, outcome))
                    while len(upserts) >= 2 * workers:
                        finished, upserts = wait(upserts, return_when=FIRST_COMPLETED)
                        for done in finished:
                            merge(done.result())
                    upserts.add(
                        pool.submit(_upsert, index, collection, kept, encoder.last_fingerprint, result)
                    )
                else:
                    merge(ready.result)
            for done in upserts:
                merge(done.result())
        except BaseException:
            for pending in upserts:
                pending.cancel()
            if producer_error:
                raise producer_error[0] from None
            raise
    if producer_error:
        raise producer_error[0]
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _Prepared:
    """A batch read, hashed and resume-checked, waiting for its embeddings."""

    result: _BatchResult
    #: (row, metadata with content hash) of the items sent to the encoder, in order.
    rows: list[tuple[IngestRow, dict[str, MetadataValue]]]
    images: list[bytes]


def _mark_duplicates(batch: list[IngestRow], first_seen: dict[str, int]) -> list[IngestRow]:
    marked = []
    for row in batch:
        if row.error is None and row.id in first_seen:
            row = IngestRow(row.row, row.id, {}, row.load, f"duplicate id (row {first_seen[row.id]})")
        elif row.error is None:
            first_seen[row.id] = row.row
        marked.append(row)
    return marked


def _prepare(index: IndexClient, collection: str, batch: list[IngestRow], resume: bool) -> _Prepared:
    result = _BatchResult()
    loaded: list[tuple[IngestRow, bytes, dict[str, MetadataValue]]] = []
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
    return _Prepared(
        result, [(row, metadata) for row, _, metadata in loaded], [image for _, image, _ in loaded]
    )


def _upsert(
    index: IndexClient,
    collection: str,
    kept: list[tuple[str, dict[str, MetadataValue], np.ndarray]],
    fingerprint: str,
    result: _BatchResult,
) -> _BatchResult:
    if kept:
        ids = [item_id for item_id, _, _ in kept]
        vectors = np.stack([vector for _, _, vector in kept])
        index.upsert(
            collection, ids, vectors, [metadata for _, metadata, _ in kept], model_fingerprint=fingerprint
        )
        result.ingested = len(kept)
    return result


def content_hash(image: bytes, metadata: dict[str, MetadataValue]) -> str:
    digest = hashlib.sha256(image)
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _batched(rows: Iterable[IngestRow], size: int) -> Iterator[list[IngestRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
