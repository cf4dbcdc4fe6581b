"""``clipsearch.v1.IndexService`` over a :class:`~.router.ShardRouter` instead of one Engine.

The request <-> value conversions are :mod:`index_service.convert`'s, the calls on each
copy are the Engine's and Collection's, and errors map to statuses through the same
:func:`~clipsearch.server.status.map_errors` as the standalone servicer. What is new is
the fan-out: writes split by shard group, reads merged, and coverage on every search.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from clipsearch.cluster.router import GroupUnavailable, ShardRouter
from clipsearch.errors import InvalidArgumentError, UnavailableError, UnimplementedError
from clipsearch.server.status import map_errors
from clipsearch.v1 import index_pb2
from clipsearch.wire import fields_from_proto
from index_service import convert, cursors, hybrid
from index_service.collection import (
    SCROLL_DEFAULT_LIMIT,
    check_found,
    check_group_size,
    check_id,
    check_search,
    group_widths,
    pick_groups,
)
from index_service.config import CollectionInfo, SearchParams, ShardStats
from index_service.hybrid import SearchMode, TextQuery
from index_service.lexical import LexicalFields


class ClusterIndexServicer:
    def __init__(self, router: ShardRouter):
        self.router = router

    async def _every_group(self, method: str, *args: Any) -> list[Any]:
        """Answers of all groups; UNAVAILABLE if one cannot answer (metadata needs them all)."""
        answers = await self.router.read_all(method, *args)
        for group, answer in enumerate(answers):
            if isinstance(answer, GroupUnavailable):
                raise UnavailableError(f"shard group {group} cannot answer: {answer}", retry_after_s=1.0)
        return answers

    @map_errors
    async def CreateCollection(self, request: index_pb2.CreateCollectionRequest, context: Any) -> Any:
        config = convert.config_from_proto(request.config)
        every = {g: (config, request.exist_ok) for g in range(self.router.num_groups)}
        infos = await self.router.write_groups("create", every)
        return index_pb2.CreateCollectionResponse(
            collection=convert.info_to_proto(_combined(list(infos.values())))
        )

    @map_errors
    async def ListCollections(self, request: index_pb2.ListCollectionsRequest, context: Any) -> Any:
        answers = await self._every_group("list")
        by_name: dict[str, list[CollectionInfo]] = {}
        for infos in answers:
            for info in infos:
                by_name.setdefault(info.config.name, []).append(info)
        return index_pb2.ListCollectionsResponse(
            collections=[convert.info_to_proto(_combined(parts)) for _, parts in sorted(by_name.items())]
        )

    @map_errors
    async def DescribeCollection(self, request: index_pb2.DescribeCollectionRequest, context: Any) -> Any:
        infos = await self._every_group("describe", request.collection)
        return index_pb2.DescribeCollectionResponse(collection=convert.info_to_proto(_combined(infos)))

    @map_errors
    async def DropCollection(self, request: index_pb2.DropCollectionRequest, context: Any) -> Any:
        every = {g: (request.collection, request.missing_ok) for g in range(self.router.num_groups)}
        dropped = await self.router.write_groups("drop", every)
        return index_pb2.DropCollectionResponse(dropped=any(dropped.values()))

    @map_errors
    async def AddFields(self, request: index_pb2.AddFieldsRequest, context: Any) -> Any:
        fields = fields_from_proto(list(request.fields), "fields")
        every = {g: (request.collection, fields) for g in range(self.router.num_groups)}
        infos = await self.router.write_groups("add_fields", every)
        return index_pb2.AddFieldsResponse(collection=convert.info_to_proto(_combined(list(infos.values()))))

    @map_errors
    async def Upsert(self, request: index_pb2.UpsertRequest, context: Any) -> Any:
        items = convert.items_from_proto(list(request.items))
        if not items.ids:
            await self._every_group("describe", request.collection)
            return index_pb2.UpsertResponse(upserted=0)
        positions = self._split(items.ids)
        work = {
            g: (
                request.collection,
                [items.ids[i] for i in where],
                [items.vectors[i] for i in where],
                [items.metadata[i] for i in where],
                request.model_fingerprint,
                where,
                [items.content_keys[i] for i in where],
                [items.groups[i] for i in where],
            )
            for g, where in positions.items()
        }
        counts = await self.router.write_groups("upsert", work)
        return index_pb2.UpsertResponse(upserted=sum(counts.values()))

    @map_errors
    async def Delete(self, request: index_pb2.DeleteRequest, context: Any) -> Any:
        """By ids: each id's group. By groups or filter: every group (items of a product may
        live in several shard groups)."""
        ids = list(request.ids)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        filter_ = _filter(request)
        broadcast = bool(request.groups) or filter_ is not None
        if not ids and not broadcast:
            await self._every_group("describe", request.collection)
            return index_pb2.DeleteResponse(deleted=0)
        split = self._split(ids)
        groups = range(self.router.num_groups) if broadcast else sorted(split)
        work = {
            g: (
                request.collection,
                [ids[i] for i in split.get(g, [])],
                list(request.groups),
                filter_,
                request.dry_run,
            )
            for g in groups
        }
        counts = await self.router.write_groups("delete", work)
        return index_pb2.DeleteResponse(deleted=sum(counts.values()))

    @map_errors
    async def UpdateMetadata(self, request: index_pb2.UpdateMetadataRequest, context: Any) -> Any:
        ids = list(request.ids)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        split = self._split(ids)
        set_ = convert.metadata_from_proto(request.set, "set")
        work = {
            g: (
                request.collection,
                [ids[i] for i in split.get(g, [])],
                list(request.groups),
                _filter(request),
                set_,
                list(request.unset),
                request.dry_run,
            )
            for g in range(self.router.num_groups)
        }
        counts = await self.router.write_groups("update_metadata", work)
        return index_pb2.UpdateMetadataResponse(updated=sum(counts.values()))

    @map_errors
    async def Count(self, request: index_pb2.CountRequest, context: Any) -> Any:
        counts = await self._every_group("count", request.collection, _filter(request))
        return index_pb2.CountResponse(count=sum(counts))

    @map_errors
    async def Scroll(self, request: index_pb2.ScrollRequest, context: Any) -> Any:
        """Every group's page after the cursor, merged in id order. A group that stopped early
        (its scan bound) bounds the merged page, so no item of it is skipped."""
        answers = await self._every_group(
            "scroll",
            request.collection,
            _filter(request),
            request.limit,
            request.cursor,
            request.include_vectors,
        )
        name = await self.router.read(0, "resolve", request.collection)
        limit = request.limit or SCROLL_DEFAULT_LIMIT
        bounds = [cursors.decode(next_cursor, name) for _, next_cursor in answers if next_cursor]
        bound = min(bounds) if bounds else None
        merged = sorted((item for items, _ in answers for item in items), key=lambda item: item.id)
        page = [item for item in merged if bound is None or item.id <= bound][:limit]
        more = bound is not None or len(merged) > len(page)
        after = page[-1].id if page else bound
        next_cursor = cursors.encode(name, after) if more and after is not None else ""
        return index_pb2.ScrollResponse(
            items=[convert.item_to_proto(i) for i in page], next_cursor=next_cursor
        )

    @map_errors
    async def SetAlias(self, request: index_pb2.SetAliasRequest, context: Any) -> Any:
        """Set on every shard group (not atomic across groups: see docs/cluster.md)."""
        every = {g: (request.alias, request.collection) for g in range(self.router.num_groups)}
        previous = await self.router.write_groups("set_alias", every)
        return index_pb2.SetAliasResponse(previous=previous[0])

    @map_errors
    async def DeleteAlias(self, request: index_pb2.DeleteAliasRequest, context: Any) -> Any:
        every = {g: (request.alias, request.missing_ok) for g in range(self.router.num_groups)}
        deleted = await self.router.write_groups("delete_alias", every)
        return index_pb2.DeleteAliasResponse(deleted=any(deleted.values()))

    @map_errors
    async def ListAliases(self, request: index_pb2.ListAliasesRequest, context: Any) -> Any:
        aliases = await self.router.read(0, "list_aliases")
        return index_pb2.ListAliasesResponse(
            aliases=[
                index_pb2.Alias(alias=a.alias, collection=a.collection, previous=a.previous) for a in aliases
            ]
        )

    @map_errors
    async def Backup(self, request: index_pb2.BackupRequest, context: Any) -> AsyncIterator[Any]:
        raise UnimplementedError(CLUSTER_BACKUP)
        yield  # an async generator, like the standalone server's stream

    @map_errors
    async def Restore(self, request_iterator: Any, context: Any) -> Any:
        raise UnimplementedError(CLUSTER_BACKUP)

    @map_errors
    async def Get(self, request: index_pb2.GetRequest, context: Any) -> Any:
        ids = list(request.ids)
        groups = sorted(self._split(ids)) or [0]
        parts = await asyncio.gather(
            *(
                self.router.read(
                    g,
                    "get",
                    request.collection,
                    [i for i in ids if self.router.group_of(i) == g],
                    request.include_vectors,
                )
                for g in groups
            ),
            return_exceptions=True,
        )
        found = {}
        for group, part in zip(groups, parts, strict=True):
            if isinstance(part, GroupUnavailable):
                raise UnavailableError(f"shard group {group} cannot answer: {part}", retry_after_s=1.0)
            if isinstance(part, BaseException):
                raise part
            found.update({item.id: item for item in part})
        if not request.missing_ok:
            check_found(request.collection, ids, found)
        return index_pb2.GetResponse(items=[convert.item_to_proto(found[i]) for i in ids if i in found])

    @map_errors
    async def Search(self, request: index_pb2.SearchRequest, context: Any) -> Any:
        queries = convert.queries_from_proto(list(request.queries))
        filter_ = _filter(request)
        params = SearchParams(ef_search=request.params.ef_search, nprobe=request.params.nprobe)
        text_query = convert.text_query_from_proto(request)
        searched = (
            len(text_query.texts) if text_query and text_query.mode == SearchMode.KEYWORD else len(queries)
        )
        check_search(request.k, request.offset, searched, params)
        min_coverage = request.min_coverage if request.HasField("min_coverage") else 1.0
        if not 0.0 <= min_coverage <= 1.0:
            raise InvalidArgumentError(
                f"min_coverage must be in [0, 1], got {min_coverage}", field="min_coverage"
            )
        if text_query is not None:
            infos = await self._every_group("describe", request.collection)
            fields = LexicalFields.from_schema(infos[0].config.schema).fields
            if fields or text_query.mode == SearchMode.KEYWORD:
                return await self._text_search(
                    request, queries, text_query, filter_, params, min_coverage, infos
                )
        if request.HasField("group_by"):
            return await self._search_groups(request, queries, filter_, params, min_coverage)
        outcome = await self.router.search(
            request.collection, queries, request.k, request.offset, filter_, params, request.model_fingerprint
        )
        self._check_coverage(outcome.answered, min_coverage)
        results = outcome.results
        if request.explain:
            results = [hybrid.explained(hits, request.offset) for hits in results]
        response = convert.search_response(results, grouped=False)
        response.coverage.CopyFrom(
            index_pb2.Coverage(shards_answered=outcome.answered, shards_asked=outcome.asked)
        )
        return response

    async def _text_search(
        self,
        request: Any,
        queries: Any,
        query: TextQuery,
        filter_: Any,
        params: SearchParams,
        min_coverage: float,
        infos: list[CollectionInfo],
    ) -> Any:
        """Keyword/hybrid: each group's pools, merged, then fused once (docs/hybrid.md: BM25's
        statistics are each group's own, so scores of two groups compare approximately)."""
        group_size = (request.group_by.size or 1) if request.HasField("group_by") else None
        if group_size is not None:
            check_group_size(group_size)
        total = sum(info.item_count for info in infos)
        wanted = request.k + request.offset
        widths = group_widths(wanted, group_size, total) if group_size is not None else iter([wanted])
        results: list = []
        answered = 0
        for needed in widths:
            width = query.width(needed)
            pools, answered = await self.router.text_candidates(
                request.collection, queries, query, width, filter_, params, request.model_fingerprint
            )
            self._check_coverage(answered, min_coverage)
            results, short = hybrid.results(pools, query, request.k, request.offset, width, group_size)
            if not short:
                break
        response = convert.search_response(results, grouped=group_size is not None)
        response.coverage.CopyFrom(
            index_pb2.Coverage(shards_answered=answered, shards_asked=self.router.num_groups)
        )
        return response

    async def _search_groups(
        self, request: Any, queries: Any, filter_: Any, params: SearchParams, min_coverage: float
    ) -> Any:
        size = request.group_by.size or 1
        check_group_size(size)
        infos = await self._every_group("describe", request.collection)
        total = sum(info.item_count for info in infos)
        results: list = []
        answered = 0
        for width in group_widths(request.k + request.offset, size, total):
            parts, answered = await self.router.candidates(
                request.collection, queries, width, filter_, params, request.model_fingerprint
            )
            self._check_coverage(answered, min_coverage)
            results, short = pick_groups(parts, request.k, request.offset, size)
            if not short:
                break
        if request.explain:
            results = [hybrid.explained_groups(groups, request.offset) for groups in results]
        return index_pb2.SearchResponse(
            results=[convert.groups_to_proto(groups) for groups in results],
            coverage=index_pb2.Coverage(shards_answered=answered, shards_asked=self.router.num_groups),
        )

    def _check_coverage(self, answered: int, min_coverage: float) -> None:
        if answered == 0 or answered / self.router.num_groups < min_coverage:
            raise UnavailableError(
                f"{answered} of {self.router.num_groups} shard groups answered, fewer than "
                f"min_coverage={min_coverage:g} asks for; set a lower min_coverage to accept partial results",
                retry_after_s=1.0,
            )

    def _split(self, ids: list[str]) -> dict[int, list[int]]:
        """Positions of the ids, by the shard group that holds them."""
        positions: dict[int, list[int]] = {}
        for i, item_id in enumerate(ids):
            positions.setdefault(self.router.group_of(item_id), []).append(i)
        return positions


#: Why the cluster has no Backup/Restore call (docs/cluster.md says how to back it up).
CLUSTER_BACKUP = (
    "the cluster mode has no Backup/Restore call: every copy of every shard group keeps its own "
    "data directory (<data_root>/group-G/copy-R); back up one copy per group with the standalone "
    "procedure (docs/operations.md, 'Nightly backup'), e.g. by running `clipsearch backup` against "
    "a standalone index started on a copy of that directory"
)


def _filter(request: Any) -> Any:
    return convert.filter_from_proto(request.filter) if request.HasField("filter") else None


def _combined(infos: list[CollectionInfo]) -> CollectionInfo:
    """One collection's info from its groups: counts add up, one ShardStats per group."""
    return CollectionInfo(
        infos[0].config,
        sum(i.item_count for i in infos),
        tuple(ShardStats(g, i.item_count, all(s.trained for s in i.shards)) for g, i in enumerate(infos)),
        aliases=infos[0].aliases,
    )
