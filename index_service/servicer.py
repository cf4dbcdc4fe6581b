"""The gRPC adapter: ``clipsearch.v1.IndexService`` over the :class:`~index_service.engine.Engine`.

Each handler converts the request, runs the core call on a worker thread (SQLite and FAISS
block; FAISS releases the GIL), and converts the answer. Domain errors become precise
status codes through :func:`clipsearch.server.status.map_errors`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from clipsearch.errors import UnavailableError
from clipsearch.server.status import map_errors
from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import fields_from_proto
from index_service import convert
from index_service.config import SearchParams
from index_service.engine import Engine
from index_service.metrics import IndexMetrics

T = TypeVar("T")

#: Methods that only read: they still answer (from memory) when the data directory is gone.
READS = frozenset({"ListCollections", "DescribeCollection", "Get", "Search"})


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    def __init__(self, executor: Executor):
        self._executor = executor
        #: Set once the collections are loaded; until then calls get UNAVAILABLE.
        self.engine: Engine | None = None
        #: Set by the server once its registry exists.
        self.metrics: IndexMetrics | None = None

    async def _run(self, method: str, work: Callable[[Engine], T]) -> T:
        engine = self.engine
        if engine is None:
            raise UnavailableError("the index is loading its collections", retry_after_s=1.0)
        if method not in READS and engine.check_data_dir() is not None:
            raise UnavailableError(f"{engine.failed}: writes are refused", retry_after_s=5.0)
        # contextvars carry the request id into the worker thread's log lines.
        call = functools.partial(contextvars.copy_context().run, work, engine)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @map_errors
    async def CreateCollection(self, request: index_pb2.CreateCollectionRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.CreateCollectionResponse:
            info = engine.create_collection(
                convert.config_from_proto(request.config), exist_ok=request.exist_ok
            )
            return index_pb2.CreateCollectionResponse(collection=convert.info_to_proto(info))

        return await self._run("CreateCollection", work)

    @map_errors
    async def ListCollections(self, request: index_pb2.ListCollectionsRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.ListCollectionsResponse:
            infos = engine.list_collections()
            return index_pb2.ListCollectionsResponse(collections=[convert.info_to_proto(i) for i in infos])

        return await self._run("ListCollections", work)

    @map_errors
    async def DescribeCollection(self, request: index_pb2.DescribeCollectionRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.DescribeCollectionResponse:
            info = engine.describe(request.collection)
            return index_pb2.DescribeCollectionResponse(collection=convert.info_to_proto(info))

        return await self._run("DescribeCollection", work)

    @map_errors
    async def DropCollection(self, request: index_pb2.DropCollectionRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.DropCollectionResponse:
            dropped = engine.drop_collection(request.collection, missing_ok=request.missing_ok)
            return index_pb2.DropCollectionResponse(dropped=dropped)

        return await self._run("DropCollection", work)

    @map_errors
    async def AddFields(self, request: index_pb2.AddFieldsRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.AddFieldsResponse:
            fields = fields_from_proto(list(request.fields), "fields")
            info = engine.collection(request.collection).add_fields(fields)
            return index_pb2.AddFieldsResponse(collection=convert.info_to_proto(info))

        return await self._run("AddFields", work)

    @map_errors
    async def Upsert(self, request: index_pb2.UpsertRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.UpsertResponse:
            collection = engine.collection(request.collection)
            ids, vectors, metadata, keys = convert.items_from_proto(list(request.items))
            result = collection.upsert(
                ids, vectors, metadata, model_fingerprint=request.model_fingerprint, content_keys=keys
            )
            if self.metrics is not None:
                self.metrics.items_written.inc(result.count)
            return index_pb2.UpsertResponse(upserted=result.count, sequence=result.sequence)

        return await self._run("Upsert", work)

    @map_errors
    async def Delete(self, request: index_pb2.DeleteRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.DeleteResponse:
            result = engine.collection(request.collection).delete(list(request.ids))
            return index_pb2.DeleteResponse(deleted=result.count, sequence=result.sequence)

        return await self._run("Delete", work)

    @map_errors
    async def Get(self, request: index_pb2.GetRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.GetResponse:
            items = engine.collection(request.collection).get(
                list(request.ids), include_vectors=request.include_vectors, missing_ok=request.missing_ok
            )
            return index_pb2.GetResponse(items=[convert.item_to_proto(item) for item in items])

        return await self._run("Get", work)

    @map_errors
    async def Search(self, request: index_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> Any:
        def work(engine: Engine) -> index_pb2.SearchResponse:
            collection = engine.collection(request.collection)
            queries = convert.queries_from_proto(list(request.queries))
            filter_ = convert.filter_from_proto(request.filter) if request.HasField("filter") else None
            params = SearchParams(ef_search=request.params.ef_search, nprobe=request.params.nprobe)
            results = collection.search(
                queries,
                request.k,
                offset=request.offset,
                filter_=filter_,
                params=params,
                model_fingerprint=request.model_fingerprint,
            )
            return index_pb2.SearchResponse(
                results=[
                    index_pb2.QueryResult(hits=[convert.hit_to_proto(h) for h in hits]) for hits in results
                ]
            )

        return await self._run("Search", work)
