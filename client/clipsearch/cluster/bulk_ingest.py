"""Bulk ingest on Ray Data: ``clipsearch bulk-ingest`` encodes a catalog across a cluster.

The driver learns the model (one Ray task loads it once), creates the collection if asked,
settles the schema as ``clipsearch ingest`` does (:func:`clipsearch.ingest.catalog_schema`),
and reads the catalog (rows only, no images), parsing each row's cells by their fields; a
row that does not fit is reported there. The rest becomes a Ray dataset. Two
``map_batches`` stages with actor pools stream through it:

* **encode** (``--encoders`` actors, a GPU each when asked): loads each image (a file, or a
  URL fetched within the same limits as ``clipsearch ingest``), computes its content key
  (image, metadata, model), skips items stored with the same key (so a re-run resumes where
  the last one stopped, and a run through another model re-embeds), and embeds the rest with
  the same :class:`~encoder_service.core.EncoderCore` the encoder server runs;
* **load** (``--loaders`` actors): upserts the vectors into the index, durably, with the
  model fingerprint (so a collection built for another model refuses them) and, when
  asked, also writes them to Parquet files (id, vector, metadata) for other uses.

Each stage emits one status per row; the driver folds them into an
:class:`~clipsearch.types.IngestReport`. A bad row (missing file, undecodable image,
duplicate id) is reported and skipped; a run-level failure (unknown collection, the
index down past its retries) stops the job and is raised as the SDK error.

Image files are read where the encode actors run: every node must see them at the same path
(a shared volume), as with any Ray Data file source; URLs are fetched by the actors.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.cells import CellError
from clipsearch.errors import ClipsearchError, InvalidArgumentError
from clipsearch.image_sources import ImageSources, SourceError, is_url
from clipsearch.index_client import IndexClient
from clipsearch.ingest import (
    IngestRow,
    catalog_schema,
    check_model,
    content_key,
    metadata_of,
    rows_from_catalog,
    same_metadata,
)
from clipsearch.ingest_options import IngestOptions
from clipsearch.schema import Schema
from clipsearch.types import IngestFailure, IngestReport, ModelInfo

ENCODED, INGESTED, SKIPPED, FAILED = "encoded", "ingested", "skipped", "failed"


@dataclass(frozen=True)
class BulkIngestOptions:
    collection: str
    #: The index service (standalone, or a cluster's gRPC proxy): host:port.
    index_address: str
    #: EncoderSettings fields for the encode actors (model, pretrained, device, ...).
    encoder: dict[str, Any] = field(default_factory=dict)
    #: Size of the encode actor pool; each loads the model once.
    encoders: int = 2
    encoder_cpus: float = 1.0
    #: GPUs per encode actor (1 puts each on its own GPU; 0 runs on CPU).
    encoder_gpus: float = 0.0
    loaders: int = 1
    batch_size: int = 64
    resume: bool = True
    #: Also write the embeddings here as Parquet files (id, vector, metadata, content_key).
    embeddings_dir: str | None = None
    #: Items per Ray block read from the catalog (the unit of scheduling and of retry).
    block_rows: int = 512
    #: Seconds to wait for the whole encode pool to start before any work is handed out (a
    #: cluster short of resources fails with Ray's "Timed out while starting actors").
    actors_start_timeout_s: int = 600
    #: Create the collection when missing (for this model: dimension and fingerprint), with
    #: these shards and FAISS index; None requires it to exist.
    create: CreateSpec | None = None
    #: Schema, image root and list separator, as ``clipsearch ingest`` takes them.
    ingest: IngestOptions = field(default_factory=IngestOptions)


@dataclass(frozen=True)
class CreateSpec:
    num_shards: int = 1
    index_spec: str = "Flat"


@dataclass
class BulkIngestReport(IngestReport):
    #: Ray node ids whose encode actors did work.
    encoded_on: set[str] = field(default_factory=set)


class EncodeBatch:
    """Encode stage: load, key, resume check, embed. One model per actor."""

    def __init__(
        self, encoder: dict[str, Any], index_address: str, collection: str, resume: bool, fingerprint: str
    ):
        import ray

        from encoder_service.factory import core_from_settings
        from encoder_service.settings import EncoderSettings

        self.core = core_from_settings(EncoderSettings(**encoder))
        if self.core.identity.fingerprint != fingerprint:  # the driver planned with another model
            raise RuntimeError("an encode actor loaded another model than the one the run was planned with")
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.core.start())
        self.fingerprint = fingerprint
        self.dimension = self.core.identity.embedding_dim
        self.index = IndexClient(index_address, timeout_s=120) if resume else None
        self.collection = collection
        self.sources = ImageSources(Path("/"))  # locations arrive absolute (or as URLs)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from encoder_service.core import ImageInput

        n = len(batch["id"])
        ids = [str(i) for i in batch["id"]]
        status = np.full(n, ENCODED, dtype=object)
        message = np.full(n, "", dtype=object)
        kind = np.full(n, "", dtype=object)
        keys = np.full(n, "", dtype=object)
        vectors = np.zeros((n, self.dimension), dtype=np.float32)
        images: dict[int, bytes] = {}
        for i, image in enumerate(self.sources.load_many([str(location) for location in batch["location"]])):
            if isinstance(image, SourceError):
                status[i], message[i], kind[i] = FAILED, image.message, image.kind
                continue
            images[i] = image
            keys[i] = content_key(image, self.core.identity)
        if self.index is not None and images:
            stored = {
                s.id: s for s in self.index.get(self.collection, [ids[i] for i in images], missing_ok=True)
            }
            refresh = []
            for i in list(images):
                have = stored.get(ids[i])
                if have is None or have.content_key != keys[i]:
                    continue
                del images[i]  # the image is unchanged: no encoding
                if same_metadata(have.metadata, json.loads(batch["metadata"][i])) and have.group in (
                    "",
                    str(batch["group"][i]),
                ):
                    status[i] = SKIPPED
                else:
                    refresh.append(i)
            if refresh:  # the metadata changed: rewrite with the stored vector
                kept = self.index.get(
                    self.collection, [ids[i] for i in refresh], include_vectors=True, missing_ok=True
                )
                by_id = {item.id: item.vector for item in kept}
                for i in refresh:
                    if by_id.get(ids[i]) is None:
                        status[i], message[i], kind[i] = (
                            FAILED,
                            "deleted while ingesting",
                            "changed meanwhile",
                        )
                    else:
                        vectors[i] = by_id[ids[i]]
        if images:
            order = list(images)
            outcomes = self.loop.run_until_complete(
                self.core.embed_each([ImageInput(images[i]) for i in order])
            )
            for i, outcome in zip(order, outcomes, strict=True):
                if isinstance(outcome, ClipsearchError):
                    status[i], message[i], kind[i] = FAILED, outcome.message, "image refused by the encoder"
                else:
                    vectors[i] = outcome
        return {
            "row": batch["row"],
            "id": batch["id"],
            "group": batch["group"],
            "metadata": batch["metadata"],
            "content_key": keys,
            "vector": vectors,
            "status": status,
            "message": message,
            "kind": kind,
            "fingerprint": np.full(n, self.fingerprint, dtype=object),
            "node": np.full(n, self.node if images else "", dtype=object),
        }


class LoadBatch:
    """Load stage: durable upserts into the index, and the optional Parquet copy."""

    def __init__(self, index_address: str, collection: str, embeddings_dir: str | None):
        self.index = IndexClient(index_address, timeout_s=300)
        self.collection = collection
        self.embeddings_dir = embeddings_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status = np.array(batch["status"], dtype=object)
        ready = np.flatnonzero(status == ENCODED)
        if len(ready):
            ids = [str(batch["id"][i]) for i in ready]
            metadata = [json.loads(batch["metadata"][i]) for i in ready]
            vectors = np.asarray(batch["vector"][ready], dtype=np.float32)
            self.index.upsert(
                self.collection,
                ids,
                vectors,
                metadata,
                model_fingerprint=str(batch["fingerprint"][ready[0]]),
                content_keys=[str(batch["content_key"][i]) for i in ready],
                groups=[str(batch["group"][i]) for i in ready],
            )
            status[ready] = INGESTED
            if self.embeddings_dir:
                self._write_parquet(
                    self.embeddings_dir,
                    ids,
                    vectors,
                    [batch["metadata"][i] for i in ready],
                    [str(batch["content_key"][i]) for i in ready],
                )
        return {
            "row": batch["row"],
            "id": batch["id"],
            "status": status,
            "message": batch["message"],
            "kind": batch["kind"],
            "node": batch["node"],
        }

    def _write_parquet(
        self, directory: str, ids: list[str], vectors: np.ndarray, metadata: list[str], keys: list[str]
    ) -> None:
        """One Parquet file per batch: id, vector, metadata (JSON) and the resume key, so the
        embeddings can be loaded elsewhere without re-encoding and still resume."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "id": ids,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
                "metadata": metadata,
                "content_key": keys,
            }
        )
        os.makedirs(directory, exist_ok=True)
        final = Path(directory) / f"part-{uuid.uuid4().hex}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(table, partial)
        os.replace(partial, final)  # readers never see half a file


def model_identity(encoder: dict[str, Any], cpus: float, gpus: float) -> ModelInfo:
    """The encode actors' model: loaded once, in a Ray task, so the driver can plan the run."""
    import ray

    @ray.remote(num_cpus=cpus, num_gpus=gpus)
    def identity() -> ModelInfo:
        from encoder_service.factory import core_from_settings
        from encoder_service.settings import EncoderSettings

        core = core_from_settings(EncoderSettings(**encoder))
        try:
            return core.identity
        finally:
            core.close()

    return ray.get(identity.remote())


def catalog_items(
    rows: Iterator[IngestRow], schema: Schema | None, root: Path, report: IngestReport
) -> list[dict]:
    """Items to encode (one per image of each product), their cells parsed; bad rows, bad values
    and repeated ids go to ``report``."""
    items: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for row in rows:
        error, kind = row.error, "bad row"
        if error is None and row.id in first_seen:
            error, kind = f"duplicate id (row {first_seen[row.id]})", "duplicate id"
        metadata: dict = {}
        if error is None:
            try:
                metadata = metadata_of(row, schema)
            except CellError as failure:
                error, kind = str(failure), "bad value"
        if error is not None:
            report.failed.append(IngestFailure(row.row, row.id, error, kind, row.record))
            continue
        first_seen[row.id] = row.row
        for item_id, image in zip(row.item_ids(text_vector=False), row.locations, strict=True):
            location = image if is_url(image) else str(root / image)
            own = json.dumps({**metadata, "image": image})
            items.append(
                {"row": row.row, "id": item_id, "group": row.id, "location": location, "metadata": own}
            )
    return items


def bulk_ingest(catalog: str | Path, options: BulkIngestOptions) -> BulkIngestReport:
    """Runs the job on the Ray cluster this process is connected to (``ray.init`` first)."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext

    for name in ("encoders", "loaders", "batch_size", "block_rows"):
        if getattr(options, name) < 1:
            raise InvalidArgumentError(f"{name} must be at least 1", field=name)
    started = time.perf_counter()
    report = BulkIngestReport()
    with IndexClient(options.index_address, timeout_s=120) as index:
        if options.create is None:
            index.describe_collection(options.collection)  # NOT_FOUND before any model loads
        model = model_identity(options.encoder, options.encoder_cpus, options.encoder_gpus)
        if options.create is not None:
            index.create_collection(
                options.collection,
                model.embedding_dim,
                num_shards=options.create.num_shards,
                index_spec=options.create.index_spec,
                model_fingerprint=model.fingerprint,
                model_name=model.name,
                model_pretrained=model.pretrained,
                exist_ok=True,
            )
        info = index.describe_collection(options.collection)
        check_model(info, model, "the encode actors")
        schema, report.added_fields, report.notes, root = catalog_schema(index, catalog, info, options.ingest)
    report.schema, report.model = schema, f"{model.name} ({model.pretrained})"
    items = catalog_items(rows_from_catalog(catalog), schema, root, report)
    if items:
        # Ray Data hands blocks to the first actor that is ready; wait for all of them, so
        # --encoders N means N actors sharing the work, not one busy while N-1 load models.
        # The driver's context is global: restored below for the caller's other datasets.
        context = DataContext.get_current()
        caller_wait_s = context.wait_for_min_actors_s
        context.wait_for_min_actors_s = options.actors_start_timeout_s
        dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // options.block_rows)))
        encoded = dataset.map_batches(
            EncodeBatch,
            fn_constructor_kwargs={
                "encoder": options.encoder,
                "index_address": options.index_address,
                "collection": options.collection,
                "resume": options.resume,
                "fingerprint": model.fingerprint,
            },
            compute=ActorPoolStrategy(size=options.encoders),
            batch_size=options.batch_size,
            batch_format="numpy",
            num_cpus=options.encoder_cpus,
            num_gpus=options.encoder_gpus,
        )
        loaded = encoded.map_batches(
            LoadBatch,
            fn_constructor_kwargs={
                "index_address": options.index_address,
                "collection": options.collection,
                "embeddings_dir": options.embeddings_dir,
            },
            compute=ActorPoolStrategy(size=options.loaders),
            batch_size=options.batch_size,
            batch_format="numpy",
            num_cpus=0.25,
        )
        try:
            for batch in loaded.iter_batches(batch_size=None, batch_format="numpy"):
                _fold(batch, report)
        except Exception as error:
            cause = _clipsearch_cause(error)
            if cause is not None:
                raise cause from error
            raise
        finally:
            context.wait_for_min_actors_s = caller_wait_s
    report.failed.sort(key=lambda failure: failure.row)
    report.seconds = time.perf_counter() - started
    return report


def _fold(batch: dict[str, np.ndarray], report: BulkIngestReport) -> None:
    for row, item_id, status, message, kind, node in zip(
        batch["row"],
        batch["id"],
        batch["status"],
        batch["message"],
        batch["kind"],
        batch["node"],
        strict=True,
    ):
        if status == INGESTED:
            report.ingested += 1
        elif status == SKIPPED:
            report.skipped += 1
        else:
            report.failed.append(IngestFailure(int(row), str(item_id), str(message), str(kind)))
        if node:
            report.encoded_on.add(str(node))


def _clipsearch_cause(error: BaseException) -> ClipsearchError | None:
    """The SDK error inside Ray's wrappers (RayTaskError, UserCodeException), if any."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ClipsearchError):
            return current
        stack += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None
