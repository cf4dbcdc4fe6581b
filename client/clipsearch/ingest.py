"""Catalog ingestion: planned, streamed, pipelined, bounded in memory, resumable, loud.

Before any row is read for real, :func:`plan_catalog` settles what the rows will be checked
against: the encoder's model (an ingest into a collection of another model stops here, with
both models named), and the collection's schema (its own; a declared one; and for the
catalog's other columns, types inferred from its first rows and added with AddFields, each
inference explained when a column is not what it looks like).

A catalog row is a product; each of its images is an item (the first keeps the product's id,
the next ones are ``<id>#2``, ``<id>#3``...), and with ``text_vector`` its text fields are one
more item (``<id>#text``); every item's group is the product's id, so grouped searches return
products. Images travel to the encoder over one flow-controlled ``EmbedStream``. gRPC's
request thread prepares batches as the stream makes room: it parses each row's cells by their
field types, loads the images (files, or URLs fetched concurrently within limits: see
:mod:`clipsearch.image_sources`), computes each item's content key (its image or text and
the model), and compares with what the index holds: an unchanged item is skipped, an item
whose key is unchanged but whose metadata changed is rewritten with its stored vector (a
price change re-encodes nothing), and the rest are embedded. The calling thread reads the
embeddings in order and hands each batch to a small pool of upsert threads. With ``sync``,
items of the collection that the catalog no longer has are deleted at the end.

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

from clipsearch.catalog import check_catalog, read_catalog, read_products
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
    """One product to ingest: its cells (text or JSON values) and its images (locations, or bytes)."""

    row: int
    id: str
    cells: dict[str, Any]
    image: str = ""
    image_bytes: bytes | None = None
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: Every image location of the product (``image`` first); empty means just ``image``.
    images: tuple[str, ...] = ()

    @property
    def locations(self) -> tuple[str, ...]:
        return self.images or ((self.image,) if self.image else ())

    def item_ids(self, text_vector: bool) -> list[str]:
        """The ids of the product's items: its id, then ``<id>#2``... per image, then ``<id>#text``."""
        count = max(1, len(self.locations))
        ids = [self.id] + [f"{self.id}#{n}" for n in range(2, count + 1)]
        return [*ids, f"{self.id}#text"] if text_vector else ids


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

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The fields whose text becomes each product's text vector (none: no text vectors)."""
        return tuple(name.strip() for name in self.options.text_vector.split(",") if name.strip())


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
    plan = IngestPlan(collection, model, schema, options, added, notes, root)
    unknown = [name for name in plan.text_fields if schema is not None and schema.get(name) is None]
    if unknown:
        raise InvalidArgumentError(
            f"text_vector: {unknown[0]!r} is not a column of the catalog or a field of the collection",
            field="text_vector",
        )
    return plan


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
    schema, added = _with_fields(index, info.name, existing, wanted, dry_run=options.dry_run)
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
    index: IndexClient,
    collection: str,
    existing: Schema | None,
    wanted: list[Field],
    *,
    dry_run: bool = False,
) -> tuple[Schema | None, list[str]]:
    """Adds the fields the collection lacks (``dry_run``: only says which); a field it has with
    another type is an error."""
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
    if dry_run:
        return (existing or Schema()).with_fields(missing), [f.name for f in missing]
    info = index.add_fields(collection, missing)
    return info.schema, [f.name for f in missing]


def _as_text(value: Any) -> str:
    """A JSON value as the text a CSV cell would hold, for inference."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def rows_from_catalog(path: str | Path, list_separator: str = "|") -> Iterator[IngestRow]:
    """The catalog's products (consecutive rows repeating an id merged: see catalog.read_products)."""
    for row in read_products(path, list_separator=list_separator):
        yield IngestRow(
            row.row, row.id, row.cells, image=row.image, record=row.record, error=row.error, images=row.images
        )


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
    rows = rows_from_catalog(catalog, options.list_separator)
    return ingest_rows(encoder, index, rows, plan=plan, on_progress=on_progress)


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
    report.model, report.dry_run = plan.model_label, options.dry_run
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
    #: Every item id the catalog has (failed rows too: a sync never deletes what failed to load).
    in_catalog: set[str] = set()

    def batches() -> Iterator[_Prepared]:
        first_seen: dict[str, int] = {}
        for batch in _batched(rows, options.batch_size):
            for row in batch:
                if row.id:
                    in_catalog.update(row.item_ids(bool(plan.text_fields)))
            yield _prepare(index, plan, sources, _mark_duplicates(batch, first_seen))

    def chunks() -> Iterator[list[encoder_pb2.EmbedInput]]:
        """Runs on gRPC's request thread, as fast as the stream accepts chunks."""
        try:
            for ready in batches():
                prepared.put(ready)
                if ready.items:
                    yield [item.embed_input for item in ready.items if item.embed_input is not None]
                    for item in ready.items:
                        item.embed_input = None  # sent: keep only ids and metadata
        except BaseException as error:
            producer_error.append(error)
        finally:
            prepared.put(None)

    def merge(result: _BatchResult) -> None:
        report.ingested += result.ingested
        report.updated += result.updated
        report.skipped += result.skipped
        report.failed.extend(result.failed)
        report.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(report)

    try:
        if options.dry_run:
            for ready in batches():
                ready.result.ingested += len(ready.items)
                ready.result.updated += len(ready.refresh)
                merge(ready.result)
        else:
            _run_pipeline(encoder, index, plan, chunks(), prepared, producer_error, merge)
    finally:
        sources.close()
    if producer_error:
        raise producer_error[0]
    if options.sync:
        report.deleted = _sync(index, plan, in_catalog, report)
    report.failed.sort(key=lambda failure: failure.row)
    report.seconds = time.perf_counter() - started
    return report


def _run_pipeline(
    encoder: EncoderClient,
    index: IndexClient,
    plan: IngestPlan,
    chunks: Iterator[list[encoder_pb2.EmbedInput]],
    prepared: queue.Queue[_Prepared | None],
    producer_error: list[BaseException],
    merge: Callable[[_BatchResult], None],
) -> None:
    """Encodes the prepared batches over one stream and upserts them on a pool, in order."""
    options = plan.options
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="ingest-upsert") as pool:
        upserts: set[Future] = set()
        try:
            outcomes_by_chunk = encoder.embed_stream(chunks)
            while (ready := prepared.get()) is not None:
                result, kept = ready.result, list(ready.refresh)
                if ready.items:
                    outcomes = next(outcomes_by_chunk)
                    for item, outcome in zip(ready.items, outcomes, strict=True):
                        if isinstance(outcome, ClipsearchError):
                            kind = (
                                "image refused by the encoder"
                                if item.is_image
                                else "text refused by the encoder"
                            )
                            result.fail(item.row, kind, outcome.message, item.item_id)
                        else:
                            kept.append((item, outcome))
                if not kept:
                    merge(result)
                    continue
                while len(upserts) >= 2 * options.workers:
                    finished, upserts = wait(upserts, return_when=FIRST_COMPLETED)
                    for done in finished:
                        merge(done.result())
                fingerprint = encoder.last_fingerprint or plan.model.fingerprint
                upserts.add(pool.submit(_upsert, index, plan, kept, fingerprint, result))
            for done in upserts:
                merge(done.result())
        except BaseException:
            for pending in upserts:
                pending.cancel()
            if producer_error:
                raise producer_error[0] from None
            raise


def _sync(index: IndexClient, plan: IngestPlan, in_catalog: set[str], report: IngestReport) -> int:
    """Deletes (``dry_run``: counts) the collection's items the catalog no longer has."""
    if not in_catalog or report.ingested + report.updated + report.skipped == 0:
        raise FailedPreconditionError(
            "sync: not one row of the catalog could be ingested, so nothing is deleted (a sync of an "
            "empty or unreadable catalog would empty the collection); fix the catalog and run again",
            field="sync",
        )
    stale = [item.id for item in index.iter_items(plan.collection) if item.id not in in_catalog]
    if plan.options.dry_run or not stale:
        return len(stale)
    return index.delete(plan.collection, stale)


@dataclass
class _BatchResult:
    ingested: int = 0
    updated: int = 0
    skipped: int = 0
    failed: list[IngestFailure] = field(default_factory=list)

    def fail(self, row: IngestRow, kind: str, reason: str, item_id: str = "") -> None:
        self.failed.append(IngestFailure(row.row, item_id or row.id, reason, kind, row.record))


@dataclass
class _Item:
    """One vector to write: an image of a product, or its text."""

    row: IngestRow
    item_id: str
    metadata: dict[str, MetadataValue]
    content_key: str
    #: What the encoder embeds (dropped once sent).
    embed_input: encoder_pb2.EmbedInput | None
    is_image: bool = True
    #: Rewritten with its stored vector (its metadata changed, its image did not).
    refreshed: bool = False

    @property
    def group(self) -> str:
        return self.row.id


@dataclass
class _Prepared:
    """A batch parsed, loaded, keyed and resume-checked, waiting for its embeddings."""

    result: _BatchResult
    #: The items sent to the encoder, in order.
    items: list[_Item]
    #: Items whose vector is unchanged but metadata is not: rewritten with their stored vector.
    refresh: list[tuple[_Item, np.ndarray]] = field(default_factory=list)


def _mark_duplicates(batch: list[IngestRow], first_seen: dict[str, int]) -> list[IngestRow]:
    marked = []
    for row in batch:
        if row.error is None and row.id in first_seen:
            row = IngestRow(
                row.row,
                row.id,
                {},
                record=row.record,
                error=(
                    f"duplicate id (row {first_seen[row.id]}; the rows of one product must be next "
                    "to each other)"
                ),
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


def content_key(source: bytes | str, model: ModelInfo) -> str:
    """What an item's vector is made from: its image bytes (or its text), the model and how the
    encoder turns images into pixels. Any of them changing re-embeds the item; metadata is
    compared apart (a changed price rewrites the item with its stored vector)."""
    digest = hashlib.sha256(source if isinstance(source, bytes) else b"text\0" + source.encode("utf-8"))
    digest.update(f"\0{model.fingerprint}\0{model.preprocessing}".encode())
    return "sha256:" + digest.hexdigest()


def same_metadata(stored: dict[str, MetadataValue], wanted: dict[str, MetadataValue]) -> bool:
    """Equal as the index stores them (numbers compare as numbers: 3 == 3.0)."""
    return stored.keys() == wanted.keys() and all(stored[k] == wanted[k] for k in stored)


def product_text(row: IngestRow, metadata: dict[str, MetadataValue], fields: tuple[str, ...]) -> str:
    """The product's text for its text vector: the listed fields that it has, in order."""
    parts = []
    for name in fields:
        value = metadata.get(name)
        if isinstance(value, list):
            value = " ".join(value)
        if value not in (None, ""):
            parts.append(str(value))
    return ". ".join(parts)


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
    located = [location for row, _ in parsed if row.image_bytes is None for location in row.locations]
    loaded = iter(sources.load_many(located))
    items: list[_Item] = []
    for row, metadata in parsed:
        images = [row.image_bytes] if row.image_bytes is not None else [next(loaded) for _ in row.locations]
        ids = row.item_ids(text_vector=False)
        for n, image in enumerate(images):
            if isinstance(image, SourceError):
                result.fail(row, image.kind, image.message, ids[n])
                continue
            own = {**metadata, IMAGE_FIELD.name: row.locations[n]} if row.locations else metadata
            key = content_key(image, plan.model)
            items.append(_Item(row, ids[n], own, key, encoder_pb2.EmbedInput(image=image)))
        text = product_text(row, metadata, plan.text_fields)
        if text:
            key = content_key(text, plan.model)
            items.append(
                _Item(row, f"{row.id}#text", metadata, key, encoder_pb2.EmbedInput(text=text), False)
            )
    refresh: list[tuple[_Item, np.ndarray]] = []
    if plan.options.resume and items:
        stored = {s.id: s for s in index.get(plan.collection, [i.item_id for i in items], missing_ok=True)}
        to_embed, stale_metadata = [], []
        for item in items:
            have = stored.get(item.item_id)
            if have is None or have.content_key != item.content_key:
                to_embed.append(item)
            elif same_metadata(have.metadata, item.metadata) and have.group in ("", item.group):
                result.skipped += 1
            else:
                stale_metadata.append(item)
        if stale_metadata:
            vectors = {
                s.id: s.vector
                for s in index.get(
                    plan.collection,
                    [i.item_id for i in stale_metadata],
                    include_vectors=True,
                    missing_ok=True,
                )
            }
            for item in stale_metadata:
                vector = vectors.get(item.item_id)
                if vector is not None:
                    item.refreshed, item.embed_input = True, None
                    refresh.append((item, vector))
                else:  # deleted meanwhile: embed it again
                    to_embed.append(item)
        items = to_embed
    return _Prepared(result, items, refresh)


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
                [item.item_id for item in items],
                np.stack([vector for _, vector in kept]),
                [item.metadata for item in items],
                model_fingerprint=fingerprint,
                content_keys=[item.content_key for item in items],
                groups=[item.group for item in items],
            )
        except InvalidArgumentError as error:
            position = _item_position(error.field)
            if position is None or position >= len(kept):
                raise
            item = kept[position][0]
            result.fail(item.row, "bad value", error.message, item.item_id)
            del kept[position]
            continue
        refreshed = sum(item.refreshed for item, _ in kept)
        result.updated += refreshed
        result.ingested += len(kept) - refreshed
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
