"""The composed calls: text or image -> encoder -> index, and catalog ingestion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch.channel import ChannelOptions
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import FailedPreconditionError
from clipsearch.filters import FilterSpec
from clipsearch.images import ImageInput
from clipsearch.index_client import IndexClient
from clipsearch.ingest import ProgressCallback, ingest_catalog
from clipsearch.ingest_options import IngestOptions, ingest_options
from clipsearch.query import (
    Deadline,
    Query,
    combine_parts,
    page_without,
    query_words,
    search_mode,
    stored_vector,
    text_contents,
)
from clipsearch.request_context import one_request_id
from clipsearch.schema import Schema
from clipsearch.types import CollectionInfo, Hit, HybridOptions, IngestReport, ModelInfo


class SearchClient:
    """Search a catalog by text or image through the encoder and index services.

    >>> with SearchClient() as client:                      # doctest: +SKIP
    ...     client.create_collection("products", exist_ok=True)
    ...     client.ingest("catalog.csv", collection="products")
    ...     for hit in client.search_text("a red dress", collection="products", k=5):
    ...         print(hit.id, hit.score, hit.metadata["title"])

    Addresses default to ``$CLIPSEARCH_ENCODER`` / ``$CLIPSEARCH_INDEX``, then
    127.0.0.1:50051 / 127.0.0.1:50052. Query vectors are tagged with the encoder's
    model fingerprint, so a collection built with another model refuses them.
    """

    def __init__(
        self,
        encoder: str | None = None,
        index: str | None = None,
        *,
        timeout_s: float = 60.0,
        options: ChannelOptions | None = None,
    ):
        self.timeout_s = timeout_s
        self.options = options
        self.encoder = EncoderClient(encoder, timeout_s=timeout_s, options=options)
        self.index = IndexClient(index, timeout_s=timeout_s, options=options)
        self._model: ModelInfo | None = None

    def model_info(self) -> ModelInfo:
        """The encoder's model: name, dimension, fingerprint (asked once per client)."""
        if self._model is None:
            self._model = self.encoder.model_info()
        return self._model

    @property
    def model(self) -> ModelInfo:
        return self.model_info()

    def create_collection(
        self,
        name: str,
        *,
        num_shards: int | None = None,
        index_spec: str | None = None,
        metric: str | None = None,
        schema: Schema | Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        """A collection for this encoder's vectors: its dimension and model.

        ``num_shards`` (default 1), ``index_spec`` (Flat) and ``metric`` (cosine) apply when it is
        created; with ``exist_ok`` an existing collection is used as it is unless a setting
        given here differs (the error names each). ``schema`` declares field types (a
        :class:`~clipsearch.schema.Schema` or its dict form); without one, the first write sets it.
        """
        model = self.model_info()
        declared = Schema.from_dict(schema) if isinstance(schema, Mapping) else schema
        return self.index.create_collection(
            name,
            model.embedding_dim,
            metric=metric,
            num_shards=num_shards,
            index_spec=index_spec,
            model_fingerprint=model.fingerprint,
            model_name=model.name,
            model_pretrained=model.pretrained,
            schema=declared,
            exist_ok=exist_ok,
        )

    def search(
        self,
        query: Query | str,
        *,
        collection: str,
        k: int = 10,
        filter: FilterSpec | None = None,
        offset: int = 0,
        ef_search: int = 0,
        nprobe: int = 0,
        group_size: int | None = 1,
        mode: str = "auto",
        hybrid: HybridOptions | None = None,
        explain: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        """Search by a text or a hybrid :class:`~clipsearch.query.Query` of weighted texts and images.

        The hits are ``k`` distinct products: a product with several images (items sharing a
        group) comes once, as its best-matching item, with up to ``group_size`` of its items
        in ``Hit.group_hits``; ``group_size=None`` returns items instead. ``timeout_s`` bounds
        the whole call (encode + search); ``ef_search``/``nprobe`` tune HNSW/IVF collections.

        ``mode``: ``"auto"`` (hybrid for a query with words: the CLIP match fused with the
        words matched in the schema's text and keyword fields, so SKUs, brands and typos are
        found; vector on a collection without such fields), ``"vector"``, ``"keyword"`` (no
        encoder call) or ``"hybrid"``; ``hybrid`` tunes the fusion and ``explain`` fills
        ``Hit.explanation`` (docs/hybrid.md).
        """
        deadline = Deadline(timeout_s or self.timeout_s)
        query = Query.text(query) if isinstance(query, str) else query
        words = query_words(query)
        mode = search_mode(mode, words)
        options: dict[str, Any] = dict(
            k=k,
            filter=filter,
            offset=offset,
            ef_search=ef_search,
            nprobe=nprobe,
            group_size=group_size,
            mode=mode,
            texts=[words] if mode != "vector" else [],
            hybrid=hybrid,
            explain=explain,
        )
        with one_request_id():
            if mode == "keyword":
                return self.index.search_batch(collection, None, timeout_s=deadline.remaining(), **options)[0]
            vector = self.embed_query(query, timeout_s=deadline.remaining())
            try:
                return self.index.search(
                    collection,
                    vector,
                    model_fingerprint=self.encoder.last_fingerprint,
                    timeout_s=deadline.remaining(),
                    **options,
                )
            except FailedPreconditionError as error:
                raise self._naming_our_model(error) from None

    def _naming_our_model(self, error: FailedPreconditionError) -> FailedPreconditionError:
        """A fingerprint mismatch, with the model this client's encoder serves named too."""
        if error.field != "model_fingerprint":
            return error
        model = self.model_info()
        ours = f"{model.name} ({model.pretrained})" if model.pretrained else model.name
        return FailedPreconditionError(
            f"{error.message} [the encoder at {self.encoder.address} serves {ours}]", field=error.field
        )

    def search_text(self, text: str, *, collection: str, k: int = 10, **options) -> list[Hit]:
        """Options as :meth:`search` (filter, offset, ef_search, nprobe, timeout_s)."""
        return self.search(Query.text(text), collection=collection, k=k, **options)

    def search_image(self, image: ImageInput, *, collection: str, k: int = 10, **options) -> list[Hit]:
        """``image`` is a path, encoded bytes or a PIL image. Options as :meth:`search`."""
        return self.search(Query.image(image), collection=collection, k=k, **options)

    def more_like_this(
        self,
        item_id: str,
        *,
        collection: str,
        k: int = 10,
        filter: FilterSpec | None = None,
        offset: int = 0,
        group_size: int = 1,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        """Products closest to a stored item (its own product excluded). NOT_FOUND for an unknown id.

        Each hit holds up to ``group_size`` of its product's items in ``Hit.group_hits``, as :meth:`search`.
        """
        deadline = Deadline(timeout_s or self.timeout_s)
        with one_request_id():
            [item] = self.index.get(collection, [item_id], include_vectors=True)
            vector = stored_vector(item)
            hits = self.index.search(
                collection,
                vector,
                k=offset + k + 1,
                filter=filter,
                group_size=group_size,
                timeout_s=deadline.remaining(),
            )
        return page_without(hits, item.group or item.id, offset, k)

    def embed_query(self, query: Query, *, timeout_s: float | None = None) -> np.ndarray:
        """The query's unit vector: its parts embedded, weighted and summed."""
        texts, images = query.texts, query.images
        vectors = []
        if texts:
            vectors.append(self.encoder.embed_texts(text_contents(texts), timeout_s=timeout_s))
        if images:
            vectors.append(self.encoder.embed_images([p.content for p in images], timeout_s=timeout_s))
        return combine_parts(query, vectors)

    def ingest(
        self,
        catalog: str | Path,
        *,
        collection: str,
        options: IngestOptions | None = None,
        on_progress: ProgressCallback | None = None,
        **changes: Any,
    ) -> IngestReport:
        """Embeds every catalog image and upserts it with the row's metadata.

        ``options`` (:class:`~clipsearch.ingest.IngestOptions`), or its fields as keyword
        arguments (``batch_size=64, resume=False``), say how: batches pipelined over
        ``workers`` threads; with ``resume``, ids already stored with the same image and
        metadata are skipped, so an interrupted run can be re-run.
        """
        return self._ingest(catalog, collection, ingest_options(options, changes), on_progress)

    def _ingest(
        self,
        catalog: str | Path,
        collection: str,
        options: IngestOptions,
        on_progress: ProgressCallback | None,
    ) -> IngestReport:
        return ingest_catalog(
            self.encoder, self.index, catalog, collection=collection, options=options, on_progress=on_progress
        )

    def delete(self, *, collection: str, ids: Sequence[str] = (), **selection: Any) -> int:
        """As :meth:`IndexClient.delete` (``groups``, ``filter``, ``dry_run``)."""
        return self.index.delete(collection, ids, **selection)

    def close(self) -> None:
        self.encoder.close()
        self.index.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
