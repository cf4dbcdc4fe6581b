"""``clipsearch.v1.IndexService`` over a :class:`~.router.ShardRouter` instead of one Engine.

The request <-> value conversions are :mod:`index_service.convert`'s, the calls on each
copy are the Engine's and Collection's, and errors map to statuses through the same
:func:`~clipsearch.server.status.map_errors` as the standalone servicer. What is new is
the fan-out: writes split by shard group, reads merged, and coverage on every search.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clipsearch.cluster.router import GroupUnavailable, ShardRouter
from clipsearch.errors import InvalidArgumentError, UnavailableError
from clipsearch.server.status import map_errors
from clipsearch.v1 import index_pb2
from clipsearch.wire import fields_from_proto
from index_service import convert
from index_service.collection import check_found, check_id, check_search
from index_service.config import CollectionInfo, SearchParams, ShardStats


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
        ids, vectors, metadata, keys = convert.items_from_proto(list(request.items))
        if not ids:
            await self._every_group("describe", request.collection)
            return index_pb2.UpsertResponse(upserted=0)
        positions = self._split(ids)
        work = {
            g: (
                request.collection,
                [ids[i] for i in where],
                [vectors[i] for i in where],
                [metadata[i] for i in where],
                request.model_fingerprint,
                where,
                [keys[i] for i in where],
            )
            for g, where in positions.items()
        }
        counts = await self.router.write_groups("upsert", work)
        return index_pb2.UpsertResponse(upserted=sum(counts.values()))

    @map_errors
    async def Delete(self, request: index_pb2.DeleteRequest, context: Any) -> Any:
        ids = list(request.ids)
        for i, item_id in enumerate(ids):
            check_id(item_id, f"ids[{i}]")
        if not ids:
            await self._every_group("describe", request.collection)
            return index_pb2.DeleteResponse(deleted=0)
        work = {g: (request.collection, [ids[i] for i in where]) for g, where in self._split(ids).items()}
        counts = await self.router.write_groups("delete", work)
        return index_pb2.DeleteResponse(deleted=sum(counts.values()))

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
        filter_ = convert.filter_from_proto(request.filter) if request.HasField("filter") else None
        params = SearchParams(ef_search=request.params.ef_search, nprobe=request.params.nprobe)
        check_search(request.k, request.offset, len(queries), params)
        min_coverage = request.min_coverage if request.HasField("min_coverage") else 1.0
        if not 0.0 <= min_coverage <= 1.0:
            raise InvalidArgumentError(
                f"min_coverage must be in [0, 1], got {min_coverage}", field="min_coverage"
            )
        outcome = await self.router.search(
            request.collection, queries, request.k, request.offset, filter_, params, request.model_fingerprint
        )
        if outcome.answered == 0 or outcome.coverage < min_coverage:
            raise UnavailableError(
                f"{outcome.answered} of {outcome.asked} shard groups answered, fewer than "
                f"min_coverage={min_coverage:g} asks for; set a lower min_coverage to accept partial results",
                retry_after_s=1.0,
            )
        return index_pb2.SearchResponse(
            results=[
                index_pb2.QueryResult(hits=[convert.hit_to_proto(h) for h in hits])
                for hits in outcome.results
            ],
            coverage=index_pb2.Coverage(shards_answered=outcome.answered, shards_asked=outcome.asked),
        )

    def _split(self, ids: list[str]) -> dict[int, list[int]]:
        """Positions of the ids, by the shard group that holds them."""
        positions: dict[int, list[int]] = {}
        for i, item_id in enumerate(ids):
            positions.setdefault(self.router.group_of(item_id), []).append(i)
        return positions


def _combined(infos: list[CollectionInfo]) -> CollectionInfo:
    """One collection's info from its groups: counts add up, one ShardStats per group."""
    return CollectionInfo(
        infos[0].config,
        sum(i.item_count for i in infos),
        tuple(ShardStats(g, i.item_count, all(s.trained for s in i.shards)) for g, i in enumerate(infos)),
    )
