"""asyncio clients with the same surface as the sync ones.

    from clipsearch.aio import SearchClient

    async with SearchClient() as client:
        hits = await client.search_text("a red dress", collection="products", k=5)

Requests are built and responses parsed by the same functions the sync clients
use; only the awaiting differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np

from clipsearch._calls import AsyncServiceClient, translate_errors
from clipsearch.channel import (
    DEFAULT_ENCODER_ADDRESS,
    DEFAULT_INDEX_ADDRESS,
    ENCODER_ENV,
    INDEX_ENV,
    ChannelOptions,
    resolve_address,
)
from clipsearch.encoder_client import (
    concatenate,
    embed_requests,
    image_inputs,
    rebase_input_index,
    text_inputs,
)
from clipsearch.filters import FilterSpec
from clipsearch.images import ImageInput
from clipsearch.index_client import (
    create_collection_request,
    hits_from_response,
    search_request,
    upsert_requests,
)
from clipsearch.ingest import ProgressCallback
from clipsearch.query import Deadline, Query, combine_parts, page_without, stored_vector, text_contents
from clipsearch.request_context import one_request_id
from clipsearch.types import CollectionInfo, Hit, IngestReport, Item, ModelInfo
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc, index_pb2, index_pb2_grpc
from clipsearch.wire import MetadataScalar, vectors_from_protos


class EncoderClient(AsyncServiceClient):
    """Async twin of :class:`clipsearch.EncoderClient`."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout_s: float = 60.0,
        batch_size: int = 64,
        options: ChannelOptions | None = None,
        channel: grpc.aio.Channel | None = None,
    ):
        super().__init__(
            resolve_address(address, ENCODER_ENV, DEFAULT_ENCODER_ADDRESS),
            timeout_s=timeout_s,
            options=options,
            channel=channel,
        )
        self.batch_size = batch_size
        self._stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)
        self.last_fingerprint = ""

    async def model_info(self, *, timeout_s: float | None = None) -> ModelInfo:
        with translate_errors():
            response = await self._stub.GetModelInfo(
                encoder_pb2.GetModelInfoRequest(), timeout=timeout_s or self.timeout_s
            )
        return ModelInfo.from_proto(response.model)

    async def embed_texts(self, texts: Sequence[str], *, timeout_s: float | None = None) -> np.ndarray:
        return await self.embed(text_inputs(texts), timeout_s=timeout_s)

    async def embed_images(
        self, images: Sequence[ImageInput], *, timeout_s: float | None = None
    ) -> np.ndarray:
        return await self.embed(image_inputs(images), timeout_s=timeout_s)

    async def embed(
        self, inputs: Sequence[encoder_pb2.EmbedInput], *, timeout_s: float | None = None
    ) -> np.ndarray:
        parts: list[np.ndarray] = []
        for offset, request in embed_requests(inputs, self.batch_size):
            try:
                with translate_errors():
                    response = await self._stub.Embed(request, timeout=timeout_s or self.timeout_s)
            except Exception as error:
                rebase_input_index(error, offset)
                raise
            self.last_fingerprint = response.model_fingerprint
            parts.append(vectors_from_protos(response.embeddings, field="embeddings"))
        return concatenate(parts)


class IndexClient(AsyncServiceClient):
    """Async twin of :class:`clipsearch.IndexClient`."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout_s: float = 60.0,
        upsert_batch_size: int = 512,
        options: ChannelOptions | None = None,
        channel: grpc.aio.Channel | None = None,
    ):
        super().__init__(
            resolve_address(address, INDEX_ENV, DEFAULT_INDEX_ADDRESS),
            timeout_s=timeout_s,
            options=options,
            channel=channel,
        )
        self.upsert_batch_size = upsert_batch_size
        self._stub = index_pb2_grpc.IndexServiceStub(self._channel)

    async def create_collection(
        self,
        name: str,
        dimension: int,
        *,
        metric: str = "cosine",
        num_shards: int = 1,
        index_spec: str = "Flat",
        model_fingerprint: str = "",
        model_name: str = "",
        exist_ok: bool = False,
    ) -> CollectionInfo:
        request = create_collection_request(
            name,
            dimension,
            metric=metric,
            num_shards=num_shards,
            index_spec=index_spec,
            model_fingerprint=model_fingerprint,
            model_name=model_name,
            exist_ok=exist_ok,
        )
        with translate_errors():
            response = await self._stub.CreateCollection(request, timeout=self.timeout_s)
        return CollectionInfo.from_proto(response.collection)

    async def list_collections(self) -> list[CollectionInfo]:
        with translate_errors():
            response = await self._stub.ListCollections(
                index_pb2.ListCollectionsRequest(), timeout=self.timeout_s
            )
        return [CollectionInfo.from_proto(c) for c in response.collections]

    async def describe_collection(self, name: str) -> CollectionInfo:
        request = index_pb2.DescribeCollectionRequest(collection=name)
        with translate_errors():
            response = await self._stub.DescribeCollection(request, timeout=self.timeout_s)
        return CollectionInfo.from_proto(response.collection)

    async def drop_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        request = index_pb2.DropCollectionRequest(collection=name, missing_ok=missing_ok)
        with translate_errors():
            return (await self._stub.DropCollection(request, timeout=self.timeout_s)).dropped

    async def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, MetadataScalar]] | None = None,
        *,
        model_fingerprint: str = "",
    ) -> int:
        written = 0
        for request in upsert_requests(
            collection,
            ids,
            vectors,
            metadata,
            model_fingerprint=model_fingerprint,
            batch_size=self.upsert_batch_size,
        ):
            with translate_errors():
                written += (await self._stub.Upsert(request, timeout=self.timeout_s)).upserted
        return written

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        request = index_pb2.DeleteRequest(collection=collection, ids=list(ids))
        with translate_errors():
            return (await self._stub.Delete(request, timeout=self.timeout_s)).deleted

    async def get(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = False, missing_ok: bool = False
    ) -> list[Item]:
        request = index_pb2.GetRequest(
            collection=collection, ids=list(ids), include_vectors=include_vectors, missing_ok=missing_ok
        )
        with translate_errors():
            response = await self._stub.Get(request, timeout=self.timeout_s)
        return [Item.from_proto(item) for item in response.items]

    async def search(self, collection: str, vector: np.ndarray | Sequence[float], **kwargs) -> list[Hit]:
        return (await self.search_batch(collection, np.asarray(vector, dtype=np.float32)[None, :], **kwargs))[
            0
        ]

    async def search_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        *,
        k: int = 10,
        offset: int = 0,
        filter: FilterSpec | None = None,
        ef_search: int = 0,
        nprobe: int = 0,
        model_fingerprint: str = "",
        timeout_s: float | None = None,
    ) -> list[list[Hit]]:
        request = search_request(
            collection,
            vectors,
            k=k,
            offset=offset,
            filter=filter,
            ef_search=ef_search,
            nprobe=nprobe,
            model_fingerprint=model_fingerprint,
        )
        with translate_errors():
            response = await self._stub.Search(request, timeout=timeout_s or self.timeout_s)
        return hits_from_response(response)


class SearchClient:
    """Async twin of :class:`clipsearch.SearchClient`."""

    def __init__(
        self,
        encoder: str | None = None,
        index: str | None = None,
        *,
        timeout_s: float = 60.0,
        options: ChannelOptions | None = None,
    ):
        self.timeout_s = timeout_s
        self.encoder = EncoderClient(encoder, timeout_s=timeout_s, options=options)
        self.index = IndexClient(index, timeout_s=timeout_s, options=options)
        self._options = options
        self._model: ModelInfo | None = None

    async def model(self) -> ModelInfo:
        if self._model is None:
            self._model = await self.encoder.model_info()
        return self._model

    async def create_collection(
        self,
        name: str,
        *,
        num_shards: int = 1,
        index_spec: str = "Flat",
        metric: str = "cosine",
        exist_ok: bool = False,
    ) -> CollectionInfo:
        model = await self.model()
        return await self.index.create_collection(
            name,
            model.embedding_dim,
            metric=metric,
            num_shards=num_shards,
            index_spec=index_spec,
            model_fingerprint=model.fingerprint,
            model_name=model.name,
            exist_ok=exist_ok,
        )

    async def search(
        self,
        query: Query | str,
        *,
        collection: str,
        k: int = 10,
        filter: FilterSpec | None = None,
        offset: int = 0,
        ef_search: int = 0,
        nprobe: int = 0,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        deadline = Deadline(timeout_s or self.timeout_s)
        query = Query.text(query) if isinstance(query, str) else query
        with one_request_id():
            vector = await self.embed_query(query, timeout_s=deadline.remaining())
            return await self.index.search(
                collection,
                vector,
                k=k,
                filter=filter,
                offset=offset,
                ef_search=ef_search,
                nprobe=nprobe,
                model_fingerprint=self.encoder.last_fingerprint,
                timeout_s=deadline.remaining(),
            )

    async def search_text(self, text: str, *, collection: str, k: int = 10, **options) -> list[Hit]:
        return await self.search(Query.text(text), collection=collection, k=k, **options)

    async def search_image(self, image: ImageInput, *, collection: str, k: int = 10, **options) -> list[Hit]:
        return await self.search(Query.image(image), collection=collection, k=k, **options)

    async def more_like_this(
        self,
        item_id: str,
        *,
        collection: str,
        k: int = 10,
        filter: FilterSpec | None = None,
        offset: int = 0,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        deadline = Deadline(timeout_s or self.timeout_s)
        with one_request_id():
            [item] = await self.index.get(collection, [item_id], include_vectors=True)
            vector = stored_vector(item)
            hits = await self.index.search(
                collection, vector, k=offset + k + 1, filter=filter, timeout_s=deadline.remaining()
            )
        return page_without(hits, item_id, offset, k)

    async def embed_query(self, query: Query, *, timeout_s: float | None = None) -> np.ndarray:
        texts, images = query.texts, query.images
        vectors = await asyncio.gather(
            *([self.encoder.embed_texts(text_contents(texts), timeout_s=timeout_s)] if texts else []),
            *(
                [self.encoder.embed_images([p.content for p in images], timeout_s=timeout_s)]
                if images
                else []
            ),
        )
        return combine_parts(query, list(vectors))

    async def ingest(
        self,
        catalog: str | Path,
        *,
        collection: str,
        batch_size: int = 32,
        workers: int = 3,
        resume: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Runs the (threaded, pipelined) sync ingestion off the event loop."""
        from clipsearch.search_client import SearchClient as SyncSearchClient

        def run() -> IngestReport:
            with SyncSearchClient(self.encoder.address, self.index.address, options=self._options) as client:
                return client.ingest(
                    catalog, collection=collection, batch_size=batch_size, on_progress=on_progress
                )

        return await asyncio.to_thread(run)

    async def delete(self, *, collection: str, ids: list[str]) -> int:
        return await self.index.delete(collection, ids)

    async def close(self) -> None:
        await self.encoder.close()
        await self.index.close()

    async def __aenter__(self) -> SearchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
