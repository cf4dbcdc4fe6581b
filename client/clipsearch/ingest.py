"""Catalog ingestion: planned, streamed, pipelined, bounded in memory, resumable, loud.

Before any row is read for real, :func:`plan_catalog` settles what the rows will be checked
against: the encoder's model (an ingest into a collection of another model stops here, with
both models named), and the collection's schema (its own; a declared one; and for the
catalog's other columns, types inferred from its first rows and added with AddFields, each
inference explained when a column is not what it looks like).

Images travel to the encoder over one flow-controlled ``EmbedStream``. gRPC's request thread
prepares batches as the stream makes room: it parses each row's cells by their field types,
loads the images (files, or URLs fetched concurrently within limits: see
:mod:`clipsearch.image_sources`), computes each item's content key (image, metadata and
model), and asks the index which ids already hold that key (so a re-run skips them, and a
re-run through another model re-embeds them). The calling thread reads the embeddings in
order and hands each batch to a small pool of upsert threads.

A bad row (empty or repeated id, a value that does not fit its field, a missing or refused
image) is recorded in the report with its kind and the row as read, and skipped; it never
aborts the run. Errors that concern the whole run (unknown collection, another model, a
service down past the retries) stop it and are raised.
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
from typing import Any

import numpy as np

from clipsearch.catalog import check_catalog, read_catalog
from clipsearch.cells import CellError, infer_schema, parse_cell
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import ClipsearchError, FailedPreconditionError, InvalidArgumentError
from clipsearch.image_sources import ImageSources, SourceError, SourceLimits
from clipsearch.index_client import IndexClient
from clipsearch.ingest_options import DEFAULT_OPTIONS, IngestOptions
from clipsearch.schema import Field, FieldType, Schema
from clipsearch.types import CollectionInfo, IngestFailure, IngestReport, ModelInfo
from clipsearch.v1 import encoder_pb2
from clipsearch.wire import MetadataValue

ProgressCallback = Callable[[IngestReport], None]
#: The metadata field that keeps each item's image location as the catalog wrote it.
IMAGE_FIELD = Field("image", FieldType.KEYWORD)
#: Rows read to infer the types of a catalog's columns.
INFERENCE_ROWS = 1000


@dataclass(frozen=True)
class IngestRow:
    """One item to ingest: its cells (text or JSON values) and its image (a location, or bytes)."""

    row: int
    id: str
    cells: dict[str, Any]
    image: str = ""
    image_bytes: bytes | None = None
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class IngestPlan:
    """What every row is checked against, settled before the run."""

    collection: str
    model: ModelInfo
    #: None: the collection has none yet; the index sets it from the first write.
    schema: Schema | None
    options: IngestOptions = DEFAULT_OPTIONS
    added_fields: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Relative image paths are under this folder.
    image_root: Path = Path(".")

    @property
    def model_label(self) -> str:
        return describe_model(self.model.name, self.model.pretrained)


def describe_model(name: str, pretrained: str) -> str:
    return f"{name} ({pretrained})" if pretrained else name or "an unnamed model"


def check_model(info: CollectionInfo, model: ModelInfo, encoder_address: str) -> None:
    """FAILED_PRECONDITION naming both models when the collection holds another model's vectors."""
    if info.model_fingerprint and info.model_fingerprint != model.fingerprint:
        held = describe_model(info.model_name, info.model_pretrained)
        raise FailedPreconditionError(
            f"collection {info.name!r} holds vectors of {held}, but the encoder at {encoder_address} serves "
            f"{describe_model(model.name, model.pretrained)}: vectors of two models cannot be searched "
            "together. Ingest into a new collection and switch to it (docs/schema.md: changing the model), "
            f"or point --encoder at a server of {held}",
            field="model_fingerprint",
        )


def plan_catalog(
    encoder: EncoderClient,
    index: IndexClient,
    catalog: str | Path,
    *,
    collection: str,
    options: IngestOptions,
) -> IngestPlan:
    """The model check and the schema for a catalog (adding its new columns to the collection's)."""
    model = encoder.model_info()
    info = index.describe_collection(collection)
    check_model(info, model, encoder.address)
    schema, added, notes, root = catalog_schema(index, catalog, info, options)
    return IngestPlan(collection, model, schema, options, added, notes, root)


def catalog_schema(
    index: IndexClient, catalog: str | Path, info: CollectionInfo, options: IngestOptions
) -> tuple[Schema | None, list[str], list[str], Path]:
    """(the schema rows are checked against, fields added, notes for people, the image root).

    The collection's fields stay as they are; the catalog's other columns get the declared
    type, else the type their first rows imply, and are added to the collection with AddFields.
    """
    path = check_catalog(catalog)
    existing, declared = info.schema, options.schema
    sample: dict[str, list[str]] = {}
    for row in islice(read_catalog(path), INFERENCE_ROWS):
        for name, value in row.cells.items():
            sample.setdefault(name, []).append(_as_text(value))
    inferred = infer_schema(sample, list_separator=options.list_separator)
    wanted: list[Field] = [IMAGE_FIELD]
    notes = []
    for name, guess in inferred.items():
        chosen = declared.get(name) if declared is not None else None
        if chosen is None and existing is not None and existing.get(name) is not None:
            continue
        if chosen is None:
            chosen = guess.field
            notes.append(f"{name}: {guess.field.describe()}" + (f" ({guess.note})" if guess.note else ""))
        wanted.append(chosen)
    for declared_field in declared.fields if declared is not None else ():
        if declared_field.name not in inferred:
            wanted.append(declared_field)
    schema, added = _with_fields(index, info.name, existing, wanted)
    root = Path(options.image_root) if options.image_root else path.resolve().parent
    return schema, added, notes, root


def plan_rows(
    encoder: EncoderClient, index: IndexClient, *, collection: str, options: IngestOptions
) -> IngestPlan:
    """The model check and the collection's schema, for rows that bring their own typed values."""
    model = encoder.model_info()
    info = index.describe_collection(collection)
    check_model(info, model, encoder.address)
    return IngestPlan(collection, model, info.schema, options)


def _with_fields(
    index: IndexClient, collection: str, existing: Schema | None, wanted: list[Field]
) -> tuple[Schema | None, list[str]]:
    """Adds the fields the collection lacks; a field it has with another type is an error."""
    missing = []
    for want in wanted:
        have = existing.get(want.name) if existing is not None else None
        if have is None:
            missing.append(want)
        elif have.type != want.type:
            raise InvalidArgumentError(
                f"schema.{want.name}: the collection holds {want.name!r} as {have.describe()}, not "
                f"{want.describe()}; leave it out of the schema you give, or ingest into a new collection",
                field=f"schema.{want.name}",
            )
    if not missing:
        return existing, []
    info = index.add_fields(collection, missing)
    return info.schema, [f.name for f in missing]


def _as_text(value: Any) -> str:
    """A JSON value as the text a CSV cell would hold, for inference."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def rows_from_catalog(path: str | Path) -> Iterator[IngestRow]:
    for row in read_catalog(path):
        yield IngestRow(row.row, row.id, row.cells, image=row.image, record=row.record, error=row.error)


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
    plan = plan_catalog(encoder, index, catalog, collection=collection, options=options)
    return ingest_rows(encoder, index, rows_from_catalog(catalog), plan=plan, on_progress=on_progress)


def ingest_rows(
    encoder: EncoderClient,
    index: IndexClient,
    rows: Iterable[IngestRow],
    *,
    plan: IngestPlan,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    options = plan.options
    report = IngestReport(schema=plan.schema, added_fields=list(plan.added_fields), notes=list(plan.notes))
    report.model = plan.model_label
    started = time.perf_counter()
    prepared: queue.Queue[_Prepared | None] = queue.Queue()
    producer_error: list[BaseException] = []
    limits = SourceLimits(
        max_bytes=options.max_image_bytes,
        timeout_s=options.fetch_timeout_s,
        retries=options.fetch_retries,
        workers=options.fetch_workers,
    )
    sources = ImageSources(plan.image_root, limits)

    def chunks() -> Iterator[list[encoder_pb2.EmbedInput]]:
        """Runs on gRPC's request thread, as fast as the stream accepts chunks."""
        first_seen: dict[str, int] = {}
        try:
            for batch in _batched(rows, options.batch_size):
                ready = _prepare(index, plan, sources, _mark_duplicates(batch, first_seen))
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

    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="ingest-upsert") as pool:
            upserts: set[Future] = set()
            try:
                outcomes_by_chunk = encoder.embed_stream(chunks())
                while (ready := prepared.get()) is not None:
                    if not ready.items:
                        merge(ready.result)
                        continue
                    outcomes = next(outcomes_by_chunk)
                    result, kept = ready.result, []
                    for item, outcome in zip(ready.items, outcomes, strict=True):
                        if isinstance(outcome, ClipsearchError):
                            result.fail(item.row, "image refused by the encoder", outcome.message)
                        else:
                            kept.append((item, outcome))
                    while len(upserts) >= 2 * options.workers:
                        finished, upserts = wait(upserts, return_when=FIRST_COMPLETED)
                        for done in finished:
                            merge(done.result())
                    upserts.add(pool.submit(_upsert, index, plan, kept, encoder.last_fingerprint, result))
                for done in upserts:
                    merge(done.result())
            except BaseException:
                for pending in upserts:
                    pending.cancel()
                if producer_error:
                    raise producer_error[0] from None
                raise
    finally:
        sources.close()
    if producer_error:
        raise producer_error[0]
    report.failed.sort(key=lambda failure: failure.row)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _BatchResult:
    ingested: int = 0
    skipped: int = 0
    failed: list[IngestFailure] = field(default_factory=list)

    def fail(self, row: IngestRow, kind: str, reason: str) -> None:
        self.failed.append(IngestFailure(row.row, row.id, reason, kind, row.record))


@dataclass(frozen=True)
class _Item:
    row: IngestRow
    metadata: dict[str, MetadataValue]
    content_key: str


@dataclass
class _Prepared:
    """A batch parsed, loaded, keyed and resume-checked, waiting for its embeddings."""

    result: _BatchResult
    #: The items sent to the encoder, in order.
    items: list[_Item]
    images: list[bytes]


def _mark_duplicates(batch: list[IngestRow], first_seen: dict[str, int]) -> list[IngestRow]:
    marked = []
    for row in batch:
        if row.error is None and row.id in first_seen:
            row = IngestRow(
                row.row, row.id, {}, record=row.record, error=f"duplicate id (row {first_seen[row.id]})"
            )
        elif row.error is None:
            first_seen[row.id] = row.row
        marked.append(row)
    return marked


def metadata_of(row: IngestRow, schema: Schema | None, separator: str = "|") -> dict[str, MetadataValue]:
    """The row's cells as typed values (``image`` kept as written); CellError naming the field."""
    metadata: dict[str, MetadataValue] = {IMAGE_FIELD.name: row.image} if row.image else {}
    for name, value in row.cells.items():
        declared = schema.get(name) if schema is not None else None
        if declared is None:
            if schema is not None:
                raise CellError(
                    f"{name}: not a field of the collection (its fields: {', '.join(schema.names)})"
                )
            metadata[name] = value  # no schema yet: the first write sets it from these values
            continue
        try:
            if isinstance(value, str):
                value = parse_cell(declared, value, list_separator=separator)
            metadata[name] = declared.check(value, name)
        except (CellError, InvalidArgumentError) as error:
            message = error.message if isinstance(error, InvalidArgumentError) else str(error)
            raise CellError(f"{name}: {message.removeprefix(f'{name}: ')}") from None
    return metadata


def content_key(image: bytes, metadata: dict[str, MetadataValue], model: ModelInfo) -> str:
    """What an item is made from: its image bytes, its metadata, the model and how the encoder
    turns images into pixels (the resume key: any of them changing re-embeds the item)."""
    digest = hashlib.sha256(image)
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    digest.update(f"\0{model.fingerprint}\0{model.preprocessing}".encode())
    return "sha256:" + digest.hexdigest()


def _prepare(
    index: IndexClient, plan: IngestPlan, sources: ImageSources, batch: list[IngestRow]
) -> _Prepared:
    result = _BatchResult()
    parsed: list[tuple[IngestRow, dict[str, MetadataValue]]] = []
    for row in batch:
        if row.error is not None:
            kind = "duplicate id" if row.error.startswith("duplicate id") else "bad row"
            result.fail(row, kind, row.error)
            continue
        try:
            parsed.append((row, metadata_of(row, plan.schema, plan.options.list_separator)))
        except CellError as error:
            result.fail(row, "bad value", str(error))
    located = [row.image for row, _ in parsed if row.image_bytes is None]
    loaded = iter(sources.load_many(located))
    items: list[_Item] = []
    images: list[bytes] = []
    for row, metadata in parsed:
        image = row.image_bytes if row.image_bytes is not None else next(loaded)
        if isinstance(image, SourceError):
            result.fail(row, image.kind, image.message)
            continue
        items.append(_Item(row, metadata, content_key(image, metadata, plan.model)))
        images.append(image)
    if plan.options.resume and items:
        stored = index.get(plan.collection, [item.row.id for item in items], missing_ok=True)
        keys = {item.id: item.content_key for item in stored}
        changed = [i for i, item in enumerate(items) if keys.get(item.row.id) != item.content_key]
        result.skipped = len(items) - len(changed)
        items, images = [items[i] for i in changed], [images[i] for i in changed]
    return _Prepared(result, items, images)


def _upsert(
    index: IndexClient,
    plan: IngestPlan,
    kept: list[tuple[_Item, np.ndarray]],
    fingerprint: str,
    result: _BatchResult,
) -> _BatchResult:
    """Upserts the batch; an item the index refuses (INVALID_ARGUMENT naming it) fails alone."""
    while kept:
        items = [item for item, _ in kept]
        try:
            index.upsert(
                plan.collection,
                [item.row.id for item in items],
                np.stack([vector for _, vector in kept]),
                [item.metadata for item in items],
                model_fingerprint=fingerprint,
                content_keys=[item.content_key for item in items],
            )
        except InvalidArgumentError as error:
            position = _item_position(error.field)
            if position is None or position >= len(kept):
                raise
            result.fail(kept[position][0].row, "bad value", error.message)
            del kept[position]
            continue
        result.ingested += len(kept)
        break
    return result


def _item_position(field_name: str | None) -> int | None:
    """``i`` of ``items[i]...`` (the batch is sent in upserts of at most upsert_batch_size)."""
    if not field_name or not field_name.startswith("items["):
        return None
    number = field_name[len("items[") :].partition("]")[0]
    return int(number) if number.isdigit() else None


def _batched(rows: Iterable[IngestRow], size: int) -> Iterator[list[IngestRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
