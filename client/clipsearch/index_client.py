"""Synchronous client of ``clipsearch.v1.IndexService``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import grpc
import numpy as np

from clipsearch._calls import ServiceClient, chunks, translate_errors
from clipsearch.channel import DEFAULT_INDEX_ADDRESS, INDEX_ENV, ChannelOptions
from clipsearch.errors import InvalidArgumentError
from clipsearch.filters import FilterSpec, build_filter
from clipsearch.schema import Field, Schema
from clipsearch.types import METRICS_BY_NAME, CollectionInfo, Hit, Item
from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import MetadataValue, metadata_to_proto, schema_to_proto, vectors_to_protos


class IndexClient(ServiceClient):
    """Collections, upserts, deletes, gets and k-NN searches.

    ``address`` defaults to ``$CLIPSEARCH_INDEX`` or 127.0.0.1:50052.
    """

    ADDRESS_ENV, DEFAULT_ADDRESS = INDEX_ENV, DEFAULT_INDEX_ADDRESS
    SERVICE = ("index", "clipsearch.v1.IndexService")

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout_s: float = 60.0,
        upsert_batch_size: int = 512,
        options: ChannelOptions | None = None,
        channel: grpc.Channel | None = None,
    ):
        super().__init__(address, timeout_s=timeout_s, options=options, channel=channel)
        self.upsert_batch_size = upsert_batch_size
        self._stub = index_pb2_grpc.IndexServiceStub(self._channel)

    # -- collections -------------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        dimension: int,
        *,
        metric: str | None = None,
        num_shards: int | None = None,
        index_spec: str | None = None,
        model_fingerprint: str = "",
        model_name: str = "",
        model_pretrained: str = "",
        schema: Schema | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        """A collection; with ``exist_ok``, an existing one whose given settings agree is used as it is.

        ``num_shards``/``index_spec``/``metric`` left at None mean the defaults (1, Flat, cosine)
        for a new collection and "whatever it has" for an existing one.
        """
        request = create_collection_request(
            name,
            dimension,
            metric=metric,
            num_shards=num_shards,
            index_spec=index_spec,
            model_fingerprint=model_fingerprint,
            model_name=model_name,
            model_pretrained=model_pretrained,
            schema=schema,
            exist_ok=exist_ok,
        )
        with translate_errors(self):
            response = self._stub.CreateCollection(request, timeout=self.timeout_s)
        return CollectionInfo.from_proto(response.collection)

    def list_collections(self) -> list[CollectionInfo]:
        with translate_errors(self):
            response = self._stub.ListCollections(index_pb2.ListCollectionsRequest(), timeout=self.timeout_s)
        return [CollectionInfo.from_proto(c) for c in response.collections]

    def describe_collection(self, name: str) -> CollectionInfo:
        with translate_errors(self):
            response = self._stub.DescribeCollection(
                index_pb2.DescribeCollectionRequest(collection=name), timeout=self.timeout_s
            )
        return CollectionInfo.from_proto(response.collection)

    def add_fields(self, collection: str, fields: Sequence[Field]) -> CollectionInfo:
        """Adds fields to the collection's schema (a type never changes); returns the collection."""
        request = index_pb2.AddFieldsRequest(
            collection=collection, fields=schema_to_proto(Schema(tuple(fields))).fields
        )
        with translate_errors(self):
            response = self._stub.AddFields(request, timeout=self.timeout_s)
        return CollectionInfo.from_proto(response.collection)

    def drop_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        request = index_pb2.DropCollectionRequest(collection=name, missing_ok=missing_ok)
        with translate_errors(self):
            return self._stub.DropCollection(request, timeout=self.timeout_s).dropped

    # -- items -------------------------------------------------------------------------------

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, MetadataValue]] | None = None,
        *,
        model_fingerprint: str = "",
        content_keys: Sequence[str] | None = None,
    ) -> int:
        """Inserts or replaces items; returns how many were written (durably, when it returns)."""
        written = 0
        for request in upsert_requests(
            collection,
            ids,
            vectors,
            metadata,
            model_fingerprint=model_fingerprint,
            content_keys=content_keys,
            batch_size=self.upsert_batch_size,
        ):
            with translate_errors(self):
                written += self._stub.Upsert(request, timeout=self.timeout_s).upserted
        return written

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Deletes by id; returns how many existed. Unknown ids are not an error."""
        with translate_errors(self):
            response = self._stub.Delete(
                index_pb2.DeleteRequest(collection=collection, ids=list(ids)), timeout=self.timeout_s
            )
        return response.deleted

    def get(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = False, missing_ok: bool = False
    ) -> list[Item]:
        """Items in request order. NOT_FOUND names unknown ids, unless ``missing_ok`` leaves them out."""
        request = index_pb2.GetRequest(
            collection=collection, ids=list(ids), include_vectors=include_vectors, missing_ok=missing_ok
        )
        with translate_errors(self):
            response = self._stub.Get(request, timeout=self.timeout_s)
        return [Item.from_proto(item) for item in response.items]

    # -- search ------------------------------------------------------------------------------

    def search(self, collection: str, vector: np.ndarray | Sequence[float], **kwargs) -> list[Hit]:
        """Hits for one query vector, best first. Keyword arguments as :meth:`search_batch`."""
        return self.search_batch(collection, np.asarray(vector, dtype=np.float32)[None, :], **kwargs)[0]

    def search_batch(
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
        """Hits for each row of ``vectors``. ``filter`` takes the dict syntax of :mod:`clipsearch.filters`."""
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
        with translate_errors(self):
            response = self._stub.Search(request, timeout=timeout_s or self.timeout_s)
        return hits_from_response(response)


# -- request building and response parsing (also used by the generated clipsearch.aio) --------


def create_collection_request(
    name: str,
    dimension: int,
    *,
    metric: str | None,
    num_shards: int | None,
    index_spec: str | None,
    model_fingerprint: str,
    model_name: str,
    model_pretrained: str = "",
    schema: Schema | None = None,
    exist_ok: bool,
) -> index_pb2.CreateCollectionRequest:
    if metric is not None and metric not in METRICS_BY_NAME:
        raise InvalidArgumentError(f"metric must be one of {sorted(METRICS_BY_NAME)}", field="metric")
    config = index_pb2.CollectionConfig(
        name=name,
        dimension=dimension,
        metric=METRICS_BY_NAME[metric] if metric is not None else index_pb2.METRIC_UNSPECIFIED,
        num_shards=num_shards or 0,
        index_spec=index_spec or "",
        model_fingerprint=model_fingerprint,
        model_name=model_name,
        model_pretrained=model_pretrained,
        schema=schema_to_proto(schema) if schema is not None else None,
    )
    return index_pb2.CreateCollectionRequest(config=config, exist_ok=exist_ok)


def upsert_requests(
    collection: str,
    ids: Sequence[str],
    vectors: np.ndarray,
    metadata: Sequence[Mapping[str, MetadataValue]] | None,
    *,
    model_fingerprint: str,
    content_keys: Sequence[str] | None = None,
    batch_size: int,
) -> Iterator[index_pb2.UpsertRequest]:
    """Upsert requests of at most ``batch_size`` items each."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise InvalidArgumentError(
            f"vectors must have shape (len(ids), dim) = ({len(ids)}, dim), got {vectors.shape}",
            field="vectors",
        )
    if metadata is not None and len(metadata) != len(ids):
        raise InvalidArgumentError("metadata must have one mapping per id", field="metadata")
    if content_keys is not None and len(content_keys) != len(ids):
        raise InvalidArgumentError("content_keys must have one key per id", field="content_keys")
    for piece in chunks(len(ids), batch_size):
        protos = vectors_to_protos(vectors[piece])
        items = [
            index_pb2.Item(
                id=item_id,
                vector=vector,
                metadata=metadata_to_proto(metadata[piece.start + i]) if metadata is not None else None,
                content_key=content_keys[piece.start + i] if content_keys is not None else "",
            )
            for i, (item_id, vector) in enumerate(zip(ids[piece], protos, strict=True))
        ]
        yield index_pb2.UpsertRequest(collection=collection, items=items, model_fingerprint=model_fingerprint)


def search_request(
    collection: str,
    vectors: np.ndarray,
    *,
    k: int,
    offset: int,
    filter: FilterSpec | None,
    ef_search: int,
    nprobe: int,
    model_fingerprint: str,
) -> index_pb2.SearchRequest:
    return index_pb2.SearchRequest(
        collection=collection,
        queries=vectors_to_protos(np.asarray(vectors, dtype=np.float32)),
        k=k,
        offset=offset,
        filter=build_filter(filter),
        params=index_pb2.SearchParams(ef_search=ef_search, nprobe=nprobe),
        model_fingerprint=model_fingerprint,
    )


def hits_from_response(response: index_pb2.SearchResponse) -> list[list[Hit]]:
    return [[Hit.from_proto(hit) for hit in result.hits] for result in response.results]
