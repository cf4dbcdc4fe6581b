"""The gRPC adapter: ``clipsearch.v1.IndexService`` over the :class:`~index_service.engine.Engine`.

Each handler converts the request, runs the core call on a worker thread (SQLite and FAISS
block; FAISS releases the GIL), and converts the answer. Domain errors become precise
status codes through :func:`clipsearch.server.status.map_errors`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

import grpc

from clipsearch.errors import InvalidArgumentError, UnavailableError
from clipsearch.server.status import map_errors
from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import fields_from_proto
from index_service import backup, convert, filters, hybrid
from index_service.config import SearchParams
from index_service.engine import Engine
from index_service.inline_search import (
    MAX_INLINE_EF_SEARCH,
    MAX_INLINE_NPROBE,
    MAX_INLINE_WIDTH,
    InlinePolicy,
)
from index_service.metrics import IndexMetrics
from index_service.planner import Plan
from index_service.rwlock import WouldBlock, no_wait
from index_service.search_batcher import SearchBatcher

T = TypeVar("T")

#: Methods that only read: they still answer (from memory) when the data directory is gone.
READS = frozenset(
    {"ListCollections", "DescribeCollection", "Get", "Search", "Count", "Scroll", "ListAliases"}
)


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    def __init__(self, executor: Executor, inline: InlinePolicy | None = None):
        self._executor = executor
        #: Which searches are cheap enough to run on the event loop's thread (none when None).
        self.inline = inline
        #: Set once the collections are loaded; until then calls get UNAVAILABLE.
        self.engine: Engine | None = None
        #: Set by the server once its registry exists.
        self.metrics: IndexMetrics | None = None
        #: Merges concurrent one-query searches of one shape (None: --search-batch 0, each alone).
        self.search_batcher: SearchBatcher | None = None

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
            collection = engine.collection(request.collection, model_fingerprint=request.model_fingerprint)
            items = convert.items_from_proto(list(request.items))
            result = collection.upsert(
                items.ids,
                items.vectors,
                items.metadata,
                model_fingerprint=request.model_fingerprint,
                content_keys=items.content_keys,
                groups=items.groups,
            )
            if self.metrics is not None:
                self.metrics.items_written.inc(result.count)
            return index_pb2.UpsertResponse(upserted=result.count, sequence=result.sequence)

        return await self._run("Upsert", work)

    @map_errors
    async def Delete(self, request: index_pb2.DeleteRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.DeleteResponse:
            result = engine.collection(request.collection).delete(
                list(request.ids),
                groups=list(request.groups),
                filter_=_filter(request),
                dry_run=request.dry_run,
            )
            return index_pb2.DeleteResponse(deleted=result.count, sequence=result.sequence)

        return await self._run("Delete", work)

    @map_errors
    async def UpdateMetadata(self, request: index_pb2.UpdateMetadataRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.UpdateMetadataResponse:
            result = engine.collection(request.collection).update_metadata(
                list(request.ids),
                groups=list(request.groups),
                filter_=_filter(request),
                set_=convert.metadata_from_proto(request.set, "set"),
                unset=list(request.unset),
                dry_run=request.dry_run,
            )
            return index_pb2.UpdateMetadataResponse(updated=result.count, sequence=result.sequence)

        return await self._run("UpdateMetadata", work)

    @map_errors
    async def Get(self, request: index_pb2.GetRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.GetResponse:
            items = engine.collection(request.collection).get(
                list(request.ids), include_vectors=request.include_vectors, missing_ok=request.missing_ok
            )
            return index_pb2.GetResponse(items=[convert.item_to_proto(item) for item in items])

        return await self._run("Get", work)

    @map_errors
    async def Count(self, request: index_pb2.CountRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.CountResponse:
            return index_pb2.CountResponse(
                count=engine.collection(request.collection).count(_filter(request))
            )

        return await self._run("Count", work)

    @map_errors
    async def Scroll(self, request: index_pb2.ScrollRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.ScrollResponse:
            items, cursor = engine.collection(request.collection).scroll(
                filter_=_filter(request),
                limit=request.limit,
                cursor=request.cursor,
                include_vectors=request.include_vectors,
            )
            return index_pb2.ScrollResponse(
                items=[convert.item_to_proto(item) for item in items], next_cursor=cursor
            )

        return await self._run("Scroll", work)

    @map_errors
    async def Search(self, request: index_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> Any:
        batcher = self.search_batcher
        if batcher is not None and batcher.batchable(request):
            return await batcher.search(request, self._search)
        return await self._search(request)

    async def _search(self, request: index_pb2.SearchRequest) -> index_pb2.SearchResponse:
        work = self._search_work(request)
        inline, key = self.inline, _inline_key(request)
        if inline is None or key is None:
            response = await self._run("Search", work)
            self._count_run("worker")
            return response
        queries = len(request.queries)

        def measured(engine: Engine) -> index_pb2.SearchResponse:
            started = time.thread_time()  # CPU time: a worker's wait for the GIL is not the search's
            response = work(engine)
            inline.record(key, queries, time.thread_time() - started)
            return response

        engine, ran = self.engine, "worker"
        if engine is not None and inline.should_inline(key, queries):
            try:
                with no_wait():
                    response = measured(engine)
                self._count_run("inline")
                return response
            except WouldBlock as blocked:  # a write holds a shard, or the search reads the store
                inline.record_blocked(key, structural=blocked.structural)
                ran = "worker_after_wait"
        response = await self._run("Search", measured)
        self._count_run(ran)
        return response

    def _count_run(self, ran: str) -> None:
        if self.metrics is not None:
            self.metrics.search_runs[ran].inc()

    def _search_work(self, request: index_pb2.SearchRequest) -> Callable[[Engine], index_pb2.SearchResponse]:
        def work(engine: Engine) -> index_pb2.SearchResponse:
            collection = engine.collection(request.collection, model_fingerprint=request.model_fingerprint)
            queries = convert.queries_from_proto(list(request.queries))
            filter_ = _filter(request)
            params = SearchParams(ef_search=request.params.ef_search, nprobe=request.params.nprobe)
            group_size = (request.group_by.size or 1) if request.HasField("group_by") else None
            text_query = convert.text_query_from_proto(request)
            if text_query is not None and not (
                text_query.mode == hybrid.SearchMode.HYBRID and not collection.has_text_fields
            ):
                found = collection.text_search(
                    queries,
                    text_query,
                    request.k,
                    offset=request.offset,
                    filter_=filter_,
                    params=params,
                    model_fingerprint=request.model_fingerprint,
                    group_size=group_size,
                )
                return convert.search_response(found, grouped=group_size is not None)
            # A vector search (hybrid on a collection without text fields is one: docs/hybrid.md).
            explain = request.explain
            plans: list[Plan] | None = [] if explain else None
            if group_size is not None:
                grouped = collection.search_groups(
                    queries,
                    request.k,
                    group_size,
                    offset=request.offset,
                    filter_=filter_,
                    params=params,
                    model_fingerprint=request.model_fingerprint,
                )
                if explain:
                    grouped = [hybrid.explained_groups(groups, request.offset) for groups in grouped]
                return convert.search_response(grouped, grouped=True)
            results = collection.search(
                queries,
                request.k,
                offset=request.offset,
                filter_=filter_,
                params=params,
                model_fingerprint=request.model_fingerprint,
                plans=plans,
            )
            if explain:
                results = [hybrid.explained(hits, request.offset) for hits in results]
            response = convert.search_response(results, grouped=False)
            if plans:
                response.plans.extend(convert.plans_to_proto(plans))
            return response

        return work

    # -- aliases -----------------------------------------------------------------------------

    @map_errors
    async def SetAlias(self, request: index_pb2.SetAliasRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.SetAliasResponse:
            return index_pb2.SetAliasResponse(previous=engine.set_alias(request.alias, request.collection))

        return await self._run("SetAlias", work)

    @map_errors
    async def DeleteAlias(self, request: index_pb2.DeleteAliasRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.DeleteAliasResponse:
            deleted = engine.delete_alias(request.alias, missing_ok=request.missing_ok)
            return index_pb2.DeleteAliasResponse(deleted=deleted)

        return await self._run("DeleteAlias", work)

    @map_errors
    async def ListAliases(self, request: index_pb2.ListAliasesRequest, context: Any) -> Any:
        def work(engine: Engine) -> index_pb2.ListAliasesResponse:
            return index_pb2.ListAliasesResponse(
                aliases=[
                    index_pb2.Alias(alias=a.alias, collection=a.collection, previous=a.previous)
                    for a in engine.list_aliases()
                ]
            )

        return await self._run("ListAliases", work)

    # -- backup and restore ------------------------------------------------------------------

    @map_errors
    async def Backup(self, request: index_pb2.BackupRequest, context: Any) -> AsyncIterator[Any]:
        """Writes the archive to the data directory's tmp/ (consistent, see backup.py), then streams it."""
        archive_box: list[Path] = []

        def work(engine: Engine) -> Path:
            archive = engine.root / "tmp" / f"backup-{uuid.uuid4().hex}.tar"
            archive_box.append(archive)
            backup.write_archive(engine, request.collection, archive)
            return archive

        try:
            archive = await self._run("Backup", work)
            read = backup.stream_file(archive)
            loop = asyncio.get_running_loop()
            while chunk := await loop.run_in_executor(self._executor, read):
                yield index_pb2.BackupResponse(data=chunk)
        finally:
            for archive in archive_box:
                archive.unlink(missing_ok=True)

    @map_errors
    async def Restore(self, request_iterator: AsyncIterator[index_pb2.RestoreRequest], context: Any) -> Any:
        """Receives the archive into tmp/, then verifies and restores it (backup.restore_archive)."""
        engine = self.engine
        if engine is None:
            raise UnavailableError("the index is loading its collections", retry_after_s=1.0)
        archive = engine.root / "tmp" / f"restore-{uuid.uuid4().hex}.tar"
        rename = ""
        try:
            with open(archive, "wb") as handle:
                first = True
                async for message in request_iterator:
                    if first:
                        rename, first = message.rename, False
                    elif message.rename and message.rename != rename:
                        raise InvalidArgumentError("rename: set it on the first message only", field="rename")
                    handle.write(message.data)

            def work(engine: Engine) -> index_pb2.RestoreResponse:
                infos = backup.restore_archive(engine, archive, rename=rename)
                return index_pb2.RestoreResponse(collections=[convert.info_to_proto(i) for i in infos])

            return await self._run("Restore", work)
        finally:
            archive.unlink(missing_ok=True)


def _inline_key(request: index_pb2.SearchRequest) -> tuple[str, bool] | None:
    """What a search's cost is learnt under, or None for searches that never run inline:
    keyword and hybrid ones, grouped ones (they read more than a shard's memory), and big
    ones (a wide page, a large efSearch or nprobe) whose cost the small ones do not predict."""
    if request.mode not in (index_pb2.SEARCH_MODE_UNSPECIFIED, index_pb2.SEARCH_MODE_VECTOR):
        return None
    if request.HasField("group_by"):
        return None
    if (
        request.k + request.offset > MAX_INLINE_WIDTH
        or request.params.ef_search > MAX_INLINE_EF_SEARCH
        or request.params.nprobe > MAX_INLINE_NPROBE
    ):
        return None
    return request.collection, request.HasField("filter")


def _filter(request: Any) -> filters.Filter | None:
    """The request's ``filter`` field, converted (None when unset)."""
    return convert.filter_from_proto(request.filter) if request.HasField("filter") else None
