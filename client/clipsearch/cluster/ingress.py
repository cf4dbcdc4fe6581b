"""The Serve ingress: every RPC of ``EncoderService`` and ``IndexService`` on one gRPC port.

Serve's proxy routes ``/clipsearch.v1.<Service>/<Method>`` to the ingress method named
``<Method>`` (the two services share no method name). Each method hands the request to
a servicer written against ``(request, context)``: the standalone EncoderServicer over a
:class:`~clipsearch.cluster.encoder_replica.RemoteEncoderCore`, and :class:`.servicer.ClusterIndexServicer`.
Encoder requests arrive as bytes (see grpc_services.py) and are parsed here with the
standalone server's lenient parsers. Errors reach the client with the standalone servers'
codes and ``google.rpc`` details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2

from clipsearch.cluster.encoder_replica import RemoteEncoderCore
from clipsearch.cluster.router import GroupUnavailable, RouterOptions, ShardRouter
from clipsearch.cluster.servicer import ClusterIndexServicer
from clipsearch.v1 import encoder_pb2, index_pb2
from encoder_service.servicer import EncoderServicer, LenientEmbedRequest, LenientEmbedStreamRequest, _parser


class AbortError(Exception):
    """Raised by :meth:`ServeContext.abort_with_status`; ``map_errors`` lets it through by name."""


class ServeContext:
    """The part of ``grpc.aio.ServicerContext`` the servicers use, over Serve's gRPC context."""

    def __init__(self, grpc_context: Any):
        self._context = grpc_context

    def time_remaining(self) -> float | None:
        return None  # Serve's context does not carry the client's deadline

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    async def abort_with_status(self, status: grpc.Status) -> None:
        self._context.set_code(status.code)
        self._context.set_details(status.details)
        self._context.set_trailing_metadata(list(status.trailing_metadata))
        raise AbortError(status.details)


class _HandleCopy:
    """A router copy over a Serve deployment handle."""

    def __init__(self, handle: Any):
        self._handle = handle

    async def call(self, method: str, *args: Any) -> Any:
        return await self._handle.call.remote(method, *args)


_parse_embed = _parser(LenientEmbedRequest)
_parse_embed_chunk = _parser(LenientEmbedStreamRequest)


async def _parsed_chunks(raw_chunks: Any) -> AsyncIterator[Any]:
    async for raw in raw_chunks:
        yield _parse_embed_chunk(raw)


class Ingress:
    def __init__(self, encoder: Any, copies: list[list[Any]], router: RouterOptions | None = None):
        self.encoder = RemoteEncoderCore(encoder)
        self.encoder_servicer = EncoderServicer(self.encoder)
        groups = [[_HandleCopy(h) for h in group] for group in copies]
        self.index_servicer = ClusterIndexServicer(ShardRouter(groups, router or RouterOptions()))

    async def _unary(
        self, method: Callable[..., Awaitable[Any]], request: Any, context: Any, empty: Any
    ) -> Any:
        try:
            return await method(request, ServeContext(context))
        except AbortError:
            return empty

    # -- clipsearch.v1.EncoderService ---------------------------------------------------------

    async def Embed(self, request: Any, grpc_context: Any) -> encoder_pb2.EmbedResponse:
        await self.encoder.load()
        return await self._unary(
            self.encoder_servicer.Embed, _parse_embed(request), grpc_context, encoder_pb2.EmbedResponse()
        )

    async def EmbedStream(
        self, request_iterator: Any, grpc_context: Any
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        await self.encoder.load()
        try:
            chunks = _parsed_chunks(request_iterator)
            # ServeContext provides the part of grpc.aio.ServicerContext the servicer uses.
            context = cast(grpc.aio.ServicerContext, ServeContext(grpc_context))
            async for response in self.encoder_servicer.EmbedStream(chunks, context):
                yield response
        except AbortError:
            return

    async def GetModelInfo(self, request: Any, grpc_context: Any) -> encoder_pb2.GetModelInfoResponse:
        await self.encoder.load()
        parsed = encoder_pb2.GetModelInfoRequest.FromString(request)
        return await self._unary(
            self.encoder_servicer.GetModelInfo, parsed, grpc_context, encoder_pb2.GetModelInfoResponse()
        )

    # -- clipsearch.v1.IndexService -----------------------------------------------------------

    async def CreateCollection(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(
            s.CreateCollection, request, grpc_context, index_pb2.CreateCollectionResponse()
        )

    async def ListCollections(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(
            s.ListCollections, request, grpc_context, index_pb2.ListCollectionsResponse()
        )

    async def DescribeCollection(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        empty = index_pb2.DescribeCollectionResponse()
        return await self._unary(s.DescribeCollection, request, grpc_context, empty)

    async def DropCollection(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.DropCollection, request, grpc_context, index_pb2.DropCollectionResponse())

    async def AddFields(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.AddFields, request, grpc_context, index_pb2.AddFieldsResponse())

    async def Upsert(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(
            self.index_servicer.Upsert, request, grpc_context, index_pb2.UpsertResponse()
        )

    async def Delete(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(
            self.index_servicer.Delete, request, grpc_context, index_pb2.DeleteResponse()
        )

    async def Get(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(self.index_servicer.Get, request, grpc_context, index_pb2.GetResponse())

    async def UpdateMetadata(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.UpdateMetadata, request, grpc_context, index_pb2.UpdateMetadataResponse())

    async def Count(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(self.index_servicer.Count, request, grpc_context, index_pb2.CountResponse())

    async def Scroll(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(
            self.index_servicer.Scroll, request, grpc_context, index_pb2.ScrollResponse()
        )

    async def SetAlias(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(
            self.index_servicer.SetAlias, request, grpc_context, index_pb2.SetAliasResponse()
        )

    async def DeleteAlias(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.DeleteAlias, request, grpc_context, index_pb2.DeleteAliasResponse())

    async def ListAliases(self, request: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.ListAliases, request, grpc_context, index_pb2.ListAliasesResponse())

    async def Backup(self, request: Any, grpc_context: Any) -> AsyncIterator[index_pb2.BackupResponse]:
        # The abort set the status on the context; raising (not returning) makes the proxy send
        # it: a server stream that just ends is answered OK.
        async for response in self.index_servicer.Backup(request, ServeContext(grpc_context)):
            yield response

    async def Restore(self, request_iterator: Any, grpc_context: Any) -> Any:
        s = self.index_servicer
        return await self._unary(s.Restore, request_iterator, grpc_context, index_pb2.RestoreResponse())

    async def Search(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary(
            self.index_servicer.Search, request, grpc_context, index_pb2.SearchResponse()
        )

    # -- grpc.health.v1.Health ----------------------------------------------------------------

    async def Check(self, request: Any, grpc_context: Any) -> health_pb2.HealthCheckResponse:
        """SERVING once the model is loaded and a copy of every shard group answers."""
        status = health_pb2.HealthCheckResponse.SERVING
        try:
            await self.encoder.load()
            answers = await self.index_servicer.router.read_all("list")
            if any(isinstance(a, GroupUnavailable) for a in answers):
                status = health_pb2.HealthCheckResponse.NOT_SERVING
        except Exception:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)
