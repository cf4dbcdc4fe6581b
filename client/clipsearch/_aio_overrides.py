"""The few asyncio methods that are not a mechanical translation of the sync clients.

``scripts/gen_aio.py`` builds :mod:`clipsearch.aio` from ``encoder_client.py``,
``index_client.py`` and ``search_client.py``: every method that calls the server becomes
``async`` and awaits its calls. The methods below replace the generated ones because their
asyncio form differs in kind, not just in ``await``: a stream that is an async iterator, a
property that needs a call, and the threaded ingest pipeline run off the event loop. This
module is read by the generator, never imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipsearch._calls import AsyncServiceClient, translate_errors
from clipsearch.encoder_client import STREAM_READ_WINDOW, ReadCredit, outcome_from_proto, stream_request
from clipsearch.errors import ClipsearchError
from clipsearch.filters import FilterSpec
from clipsearch.index_client import BACKUP_TIMEOUT_S, finish_backup, partial_file
from clipsearch.types import IngestReport, Item, ModelInfo, Page
from clipsearch.v1 import encoder_pb2, index_pb2


class EncoderClient(AsyncServiceClient):  # the base only types this module; the sync class's is used
    _stub: Any
    last_fingerprint: str

    async def embed_stream(
        self,
        chunks: Iterable[Sequence[encoder_pb2.EmbedInput]],
        *,
        timeout_s: float | None = None,
        read_window: int = STREAM_READ_WINDOW,
    ) -> AsyncIterator[list[np.ndarray | ClipsearchError]]:
        """Bulk encoding over one flow-controlled ``EmbedStream``: an async iterator of chunks'
        outcomes. At most ``read_window`` chunks are sent beyond those the caller has taken."""
        ReadCredit(read_window)  # checks the window as the sync client does
        read = 0
        ended = False
        room = asyncio.Event()

        async def requests() -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
            for number, chunk in enumerate(chunks):
                while number - read >= read_window and not ended:
                    room.clear()
                    await room.wait()
                if ended:
                    return
                yield stream_request(number, chunk, read, read_window)

        try:
            with translate_errors(self):
                async for response in self._stub.EmbedStream(requests(), timeout=timeout_s):
                    self.last_fingerprint = response.model_fingerprint
                    outcomes = [
                        outcome_from_proto(result, f"inputs[{i}]")
                        for i, result in enumerate(response.results)
                    ]
                    read += 1
                    room.set()
                    yield outcomes
        finally:
            ended = True
            room.set()


class IndexClient(AsyncServiceClient):
    _stub: Any
    timeout_s: float

    async def scroll(self, collection: str, **options: Any) -> Page: ...  # type: ignore[empty-body]

    async def iter_items(
        self,
        collection: str,
        *,
        filter: FilterSpec | None = None,
        page_size: int = 1000,
        include_vectors: bool = False,
    ) -> AsyncIterator[Item]:
        """Every item (matching ``filter``), in id order, a page at a time: ``async for``."""
        cursor = ""
        while True:
            page = await self.scroll(
                collection, filter=filter, limit=page_size, cursor=cursor, include_vectors=include_vectors
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def backup(self, path: str | Path, *, collection: str = "", timeout_s: float | None = None) -> int:
        """Writes a consistent backup archive to ``path`` (see the sync client); its size in bytes."""
        target = Path(path)
        size = 0
        with partial_file(target) as (partial, handle), translate_errors(self):
            request = index_pb2.BackupRequest(collection=collection)
            async for response in self._stub.Backup(request, timeout=timeout_s or BACKUP_TIMEOUT_S):
                handle.write(response.data)
                size += len(response.data)
        return finish_backup(partial, target, size, self.address)


class SearchClient:
    encoder: Any
    index: Any
    timeout_s: float
    options: Any

    async def model_info(self) -> ModelInfo: ...  # type: ignore[empty-body]

    async def model(self) -> ModelInfo:
        """The encoder's model (asked once): ``client.model`` in the sync client."""
        return await self.model_info()

    async def _ingest(self, *args: Any) -> IngestReport:
        """The sync pipeline (threads reading, encoding, upserting) off the event loop, with this
        client's addresses, timeout and channel options."""
        from clipsearch.search_client import SearchClient as SyncSearchClient

        def run() -> IngestReport:
            address = (self.encoder.address, self.index.address)
            with SyncSearchClient(*address, timeout_s=self.timeout_s, options=self.options) as client:
                return client._ingest(*args)

        return await asyncio.to_thread(run)
