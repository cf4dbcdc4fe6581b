"""Bulk ingest on Ray Data: ``clipsearch bulk-ingest`` encodes a catalog across a cluster.

The catalog is read on the driver (rows only, no images) and becomes a Ray dataset. Two
``map_batches`` stages with actor pools stream through it:

* **encode** (``--encoders`` actors, a GPU each when asked): reads each image, hashes it
  with its metadata, skips items whose stored ``content_sha256`` already matches (so a
  re-run resumes where the last one stopped), and embeds the rest with the same
  :class:`~encoder_service.core.EncoderCore` the encoder server runs;
* **load** (``--loaders`` actors): upserts the vectors into the index, durably, with the
  model fingerprint (so a collection built for another model refuses them) and, when
  asked, also writes them to Parquet files (id, vector, metadata) for other uses.

Each stage emits one status per row; the driver folds them into an
:class:`~clipsearch.types.IngestReport`. A bad row (missing file, undecodable image,
duplicate id) is reported and skipped; a run-level failure (unknown collection, the
index down past its retries) stops the job and is raised as the SDK error.

The images are read where the encode actors run: every node must see the catalog's
files at the same path (a shared volume), as with any Ray Data file source.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.catalog import read_catalog
from clipsearch.errors import ClipsearchError, InvalidArgumentError
from clipsearch.index_client import IndexClient
from clipsearch.ingest import CONTENT_HASH_KEY, content_hash
from clipsearch.types import IngestFailure, IngestReport

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
    #: Also write the embeddings here as Parquet files (id, vector, metadata).
    embeddings_dir: str | None = None
    #: Items per Ray block read from the catalog (the unit of scheduling and of retry).
    block_rows: int = 512
    #: Seconds to wait for the whole encode pool to start before any work is handed out (a
    #: cluster short of resources fails with Ray's "Timed out while starting actors").
    actors_start_timeout_s: int = 600
    #: Create the collection when missing (for this model: dimension and fingerprint), with
    #: these shards and FAISS index; None requires it to exist.
    create: CreateSpec | None = None


@dataclass(frozen=True)
class CreateSpec:
    num_shards: int = 1
    index_spec: str = "Flat"


@dataclass
class BulkIngestReport(IngestReport):
    #: Ray node ids whose encode actors did work.
    encoded_on: set[str] = field(default_factory=set)


class EncodeBatch:
    """Encode stage: load, hash, resume check, embed. One model per actor."""

    def __init__(
        self,
        encoder: dict[str, Any],
        index_address: str,
        collection: str,
        resume: bool,
        create: CreateSpec | None,
    ):
        import ray

        from encoder_service.factory import core_from_settings
        from encoder_service.settings import EncoderSettings

        self.core = core_from_settings(EncoderSettings(**encoder))
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.core.start())
        self.fingerprint = self.core.identity.fingerprint
        self.dimension = self.core.identity.embedding_dim
        identity = self.core.identity
        with IndexClient(index_address, timeout_s=120) as index:
            if create is not None:  # every actor asks; exist_ok makes it once
                index.create_collection(
                    collection,
                    identity.embedding_dim,
                    num_shards=create.num_shards,
                    index_spec=create.index_spec,
                    model_fingerprint=identity.fingerprint,
                    model_name=identity.name,
                    exist_ok=True,
                )
        self.index = IndexClient(index_address, timeout_s=120) if resume else None
        self.collection = collection
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from encoder_service.core import ImageInput

        n = len(batch["id"])
        ids = [str(i) for i in batch["id"]]
        status = np.full(n, ENCODED, dtype=object)
        message = np.full(n, "", dtype=object)
        metadata = np.empty(n, dtype=object)
        vectors = np.zeros((n, self.dimension), dtype=np.float32)
        images: dict[int, bytes] = {}
        for i in range(n):
            try:
                images[i] = Path(str(batch["image"][i])).read_bytes()
            except OSError as error:
                status[i], message[i] = FAILED, f"cannot read image: {error.strerror or error}"
                continue
            fields = json.loads(batch["metadata"][i])
            metadata[i] = json.dumps({**fields, CONTENT_HASH_KEY: content_hash(images[i], fields)})
        if self.index is not None and images:
            stored = self.index.get(self.collection, [ids[i] for i in images], missing_ok=True)
            hashes = {item.id: item.metadata.get(CONTENT_HASH_KEY) for item in stored}
            for i in list(images):
                if hashes.get(ids[i]) == json.loads(metadata[i])[CONTENT_HASH_KEY]:
                    status[i] = SKIPPED
                    del images[i]
        if images:
            order = list(images)
            outcomes = self.loop.run_until_complete(
                self.core.embed_each([ImageInput(images[i]) for i in order])
            )
            for i, outcome in zip(order, outcomes, strict=True):
                if isinstance(outcome, ClipsearchError):
                    status[i], message[i] = FAILED, outcome.message
                else:
                    vectors[i] = outcome
        return {
            "row": batch["row"],
            "id": batch["id"],
            "metadata": metadata,
            "vector": vectors,
            "status": status,
            "message": message,
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
                self.collection, ids, vectors, metadata, model_fingerprint=str(batch["fingerprint"][ready[0]])
            )
            status[ready] = INGESTED
            if self.embeddings_dir:
                self._write_parquet(self.embeddings_dir, ids, vectors, [batch["metadata"][i] for i in ready])
        return {
            "row": batch["row"],
            "id": batch["id"],
            "status": status,
            "message": batch["message"],
            "node": batch["node"],
        }

    def _write_parquet(
        self, directory: str, ids: list[str], vectors: np.ndarray, metadata: list[str]
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "id": ids,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
                "metadata": metadata,
            }
        )
        os.makedirs(directory, exist_ok=True)
        final = Path(directory) / f"part-{uuid.uuid4().hex}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(table, partial)
        os.replace(partial, final)  # readers never see half a file


def catalog_items(catalog: str | Path, report: IngestReport) -> list[dict[str, Any]]:
    """Rows to encode; bad rows and repeated ids go to ``report.failed`` now."""
    items: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for row in read_catalog(catalog):
        error = row.error
        if error is None and row.id in first_seen:
            error = f"duplicate id (row {first_seen[row.id]})"
        if error is not None:
            report.failed.append(IngestFailure(row.row, row.id, error))
            continue
        first_seen[row.id] = row.row
        items.append(
            {"row": row.row, "id": row.id, "image": str(row.image_path), "metadata": json.dumps(row.metadata)}
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
    if options.create is None:
        with IndexClient(options.index_address) as index:
            index.describe_collection(options.collection)  # NOT_FOUND before any model loads
    items = catalog_items(catalog, report)
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
                "create": options.create,
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
    for row, item_id, status, message, node in zip(
        batch["row"], batch["id"], batch["status"], batch["message"], batch["node"], strict=True
    ):
        if status == INGESTED:
            report.ingested += 1
        elif status == SKIPPED:
            report.skipped += 1
        else:
            report.failed.append(IngestFailure(int(row), str(item_id), str(message)))
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
