"""Builds and runs the gateway server."""

from __future__ import annotations

import asyncio
import logging

from clipsearch import aio
from clipsearch.apps.gateway.servicer import SearchServicer
from clipsearch.apps.gateway.settings import GatewaySettings
from clipsearch.health import check_health
from clipsearch.search_client import SearchClient
from clipsearch.server.serve import serve
from clipsearch.server.server import ManagedServer, ServiceBinding, options_from_settings
from clipsearch.v1 import search_pb2_grpc

log = logging.getLogger(__name__)


async def create_server(settings: GatewaySettings) -> ManagedServer:
    """A started gateway; SERVING once both upstream services answer SERVING."""
    client = aio.SearchClient(settings.encoder, settings.index)
    ingest_client = SearchClient(settings.encoder, settings.index)
    servicer = SearchServicer(client, ingest_client)
    binding = ServiceBinding(
        search_pb2_grpc.add_SearchServiceServicer_to_server, servicer, "clipsearch.v1.SearchService"
    )
    server = ManagedServer(options_from_settings(settings), [binding])
    server.add_cleanup(client.close)
    server.add_cleanup(ingest_client.close)
    await server.start()
    asyncio.get_running_loop().create_task(_serve_when_upstream_ready(server, client))
    return server


async def _serve_when_upstream_ready(server: ManagedServer, client: aio.SearchClient) -> None:
    addresses = {"encoder": client.encoder.address, "index": client.index.address}
    while not server.stopping:
        statuses = {
            name: await asyncio.to_thread(check_health, address, timeout_s=2)
            for name, address in addresses.items()
        }
        if all(status == "SERVING" for status in statuses.values()):
            await server.set_serving()
            log.info("upstream ready (%s): SERVING", addresses)
            return
        await asyncio.sleep(0.5)


def run(settings: GatewaySettings) -> int:
    return serve("gateway", settings, lambda: create_server(settings))
