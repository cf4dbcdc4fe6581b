"""``clipsearch.v1.SearchService``: a thin adapter over the SDK's composition code.

Searches run on the asyncio SearchClient, ingest on the same pipeline as
``clipsearch ingest``; the caller's deadline is passed down to the encoder and
index calls, and their errors come back with their status codes and details.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator

import grpc
from google.rpc import code_pb2

from clipsearch import aio
from clipsearch.errors import InvalidArgumentError
from clipsearch.ingest import IngestRow, ingest_rows, plan_rows
from clipsearch.ingest_options import DEFAULT_OPTIONS
from clipsearch.query import Query
from clipsearch.search_client import SearchClient
from clipsearch.server.status import map_errors
from clipsearch.types import Hit, HybridOptions, IngestReport
from clipsearch.v1 import index_pb2, search_pb2, search_pb2_grpc
from clipsearch.wire import metadata_from_proto
from index_service.convert import text_query_from_proto
from index_service.limits import DEFAULT_LIMITS, MAX_GROUP_SIZE
from index_service.limits import check_search as check_index_search

DEFAULT_K = 10
#: SearchOptions.mode -> the SDK's mode (UNSPECIFIED: auto, hybrid for a query with words).
MODES = {
    index_pb2.SEARCH_MODE_UNSPECIFIED: "auto",
    index_pb2.SEARCH_MODE_VECTOR: "vector",
    index_pb2.SEARCH_MODE_KEYWORD: "keyword",
    index_pb2.SEARCH_MODE_HYBRID: "hybrid",
}
#: Parts of one hybrid query (each is one encoder input).
MAX_HYBRID_PARTS = 64


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, client: aio.SearchClient, ingest_client: SearchClient):
        self._client = client
        self._ingest_client = ingest_client

    @map_errors
    async def SearchText(self, request, context):
        if not request.text:
            raise InvalidArgumentError("text: must not be empty", field="text")
        hits = await self._search(Query.text(request.text), _options(request.options, context))
        return search_pb2.SearchTextResponse(hits=_protos(hits), groups=_groups(hits))

    @map_errors
    async def SearchImage(self, request, context):
        if not request.image:
            raise InvalidArgumentError("image: must not be empty", field="image")
        hits = await self._search(Query.image(request.image), _options(request.options, context))
        return search_pb2.SearchImageResponse(hits=_protos(hits), groups=_groups(hits))

    @map_errors
    async def SearchHybrid(self, request, context):
        hits = await self._search(_hybrid_query(request.parts), _options(request.options, context))
        return search_pb2.SearchHybridResponse(hits=_protos(hits), groups=_groups(hits))

    @map_errors
    async def MoreLikeThis(self, request, context):
        if not request.id:
            raise InvalidArgumentError("id: must not be empty", field="id")
        options = _options(request.options, context)
        for name in ("ef_search", "nprobe", "mode", "hybrid", "explain"):
            options.pop(name)
        options["group_size"] = options["group_size"] or 1  # its hits are always products
        hits = await self._client.more_like_this(request.id, **options)
        return search_pb2.MoreLikeThisResponse(hits=_protos(hits), groups=_groups(hits))

    async def _search(self, query: Query, options: dict) -> list[Hit]:
        try:
            return await self._client.search(query, **options)
        except InvalidArgumentError as error:  # the SDK's and the index's names of SearchOptions fields
            if error.field == "mode" or (error.field or "").startswith("hybrid."):
                raise InvalidArgumentError(error.message, field=f"options.{error.field}") from None
            raise

    @map_errors
    async def Ingest(self, request_iterator: AsyncIterator[search_pb2.IngestRequest], context):
        loop = asyncio.get_running_loop()
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.collection:
            raise InvalidArgumentError(
                "collection: the first message must name the collection", field="collection"
            )
        rows = _rows_from_stream(first, request_iterator, loop)
        encoder, index = self._ingest_client.encoder, self._ingest_client.index

        def run() -> IngestReport:
            plan = plan_rows(encoder, index, collection=first.collection, options=DEFAULT_OPTIONS)
            return ingest_rows(encoder, index, rows, plan=plan)

        report = await asyncio.to_thread(run)
        failures = [
            search_pb2.IngestFailure(id=f.id, code=code_pb2.INVALID_ARGUMENT, message=f.reason)
            for f in report.failed
        ]
        return search_pb2.IngestResponse(
            ingested=report.ingested, skipped=report.skipped, failures=failures, updated=report.updated
        )


def _options(options: search_pb2.SearchOptions, context: grpc.aio.ServicerContext) -> dict:
    if not options.collection:
        raise InvalidArgumentError("options.collection: must not be empty", field="options.collection")
    # The index owns these bounds; checking them here too refuses a bad knob before the
    # encoder does any work for it (the index checks again, with its own configured limits).
    try:
        params = options.params
        check_index_search(
            options.k or DEFAULT_K, options.offset, 1, params.ef_search, params.nprobe, DEFAULT_LIMITS
        )
        hybrid = _hybrid(options.hybrid) if options.HasField("hybrid") else None
    except InvalidArgumentError as error:
        raise InvalidArgumentError(error.message, field=f"options.{error.field}") from None
    if options.mode not in MODES:
        raise InvalidArgumentError(f"options.mode: unknown mode {options.mode}", field="options.mode")
    remaining = context.time_remaining()
    return {
        "collection": options.collection,
        "k": options.k or DEFAULT_K,
        "offset": options.offset,
        "filter": options.filter if options.HasField("filter") else None,
        "ef_search": options.params.ef_search,
        "nprobe": options.params.nprobe,
        "group_size": None if options.ungrouped else _group_size(options.group_size),
        "mode": MODES[options.mode],
        "hybrid": hybrid,
        "explain": options.explain,
        "timeout_s": remaining if remaining is not None else None,
    }


def _hybrid(params: index_pb2.HybridParams) -> HybridOptions:
    """The fusion settings, checked by the index's own conversion (errors name ``hybrid.<field>``)."""
    text_query_from_proto(
        index_pb2.SearchRequest(mode=index_pb2.SEARCH_MODE_HYBRID, texts=["-"], hybrid=params)
    )
    return HybridOptions.from_proto(params)


def _group_size(size: int) -> int:
    if not 0 <= size <= MAX_GROUP_SIZE:
        raise InvalidArgumentError(
            f"options.group_size must be in [0, {MAX_GROUP_SIZE}], got {size}", field="options.group_size"
        )
    return size or 1


def _hybrid_query(parts) -> Query:
    if len(parts) > MAX_HYBRID_PARTS:
        raise InvalidArgumentError(
            f"parts: at most {MAX_HYBRID_PARTS} parts in one query, got {len(parts)}", field="parts"
        )
    query = Query()
    for i, part in enumerate(parts):
        weight = part.weight or 1.0
        if not math.isfinite(weight):
            raise InvalidArgumentError(
                f"parts[{i}].weight: must be a finite number, got {weight}", field=f"parts[{i}].weight"
            )
        kind = part.input.WhichOneof("content")
        if kind == "text":
            query = query + Query.text(part.input.text, weight)
        elif kind == "image":
            query = query + Query.image(part.input.image, weight)
        else:
            raise InvalidArgumentError(f"parts[{i}].input: set text or image", field=f"parts[{i}].input")
    return query


def _protos(hits: list[Hit]):
    return [hit.to_proto() for hit in hits]


def _groups(hits: list[Hit]) -> list[index_pb2.HitGroup]:
    return [
        index_pb2.HitGroup(group=hit.product, hits=[h.to_proto() for h in hit.group_hits])
        for hit in hits
        if hit.group_hits
    ]


def _rows_from_stream(
    first: search_pb2.IngestRequest,
    rest: AsyncIterator[search_pb2.IngestRequest],
    loop: asyncio.AbstractEventLoop,
) -> Iterator[IngestRow]:
    """Pulls stream messages from the event loop into the ingest pipeline's thread."""
    number = 0
    message: search_pb2.IngestRequest | None = first
    iterator = aiter(rest)
    while message is not None:
        for item in message.items:
            number += 1
            image = item.image
            error = None if image else "empty image"
            yield IngestRow(
                number, item.id, metadata_from_proto(item.metadata), image_bytes=image, error=error
            )
        message = asyncio.run_coroutine_threadsafe(anext(iterator, None), loop).result()
