"""One copy of one shard group: an :class:`~index_service.engine.Engine` behind a Ray actor.

Every copy keeps its own data directory (``<data_root>/group-G/copy-R``), so a copy that
restarts on the same volume replays its own store, exactly as a standalone server does.
Items reach a group by ``shard_of(id, groups)``; inside the copy the collection is sharded
again as its config says. Domain errors come back as :class:`~.router.Failed` values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipsearch.cluster.router import Failed
from clipsearch.errors import ClipsearchError, InvalidArgumentError, renumbered
from index_service.aliases import Alias
from index_service.config import CollectionConfig, CollectionInfo, SearchParams, StoredItem
from index_service.engine import Engine, EngineOptions
from index_service.filters import Filter
from index_service.hybrid import Pooled, TextQuery
from index_service.shard import Candidate


class ShardCopy:
    def __init__(self, data_root: str, group: int, copy: int, *, search_threads: int = 1):
        self.group, self.copy = group, copy
        path = Path(data_root) / f"group-{group}" / f"copy-{copy}"
        self.engine = Engine(EngineOptions(path, search_threads=search_threads))

    async def call(self, method: str, *args: Any) -> Any:
        """Runs ``method`` off the event loop (SQLite and FAISS block)."""
        work: Callable[..., Any] = getattr(self, f"do_{method}")
        try:
            return await asyncio.to_thread(work, *args)
        except ClipsearchError as error:
            return Failed.of(error)

    def where(self) -> tuple[int, int]:
        return self.group, self.copy

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    # -- the calls (each one core call) -------------------------------------------------------

    def do_create(self, config: CollectionConfig, exist_ok: bool) -> CollectionInfo:
        return self.engine.create_collection(config, exist_ok=exist_ok)

    def do_drop(self, name: str, missing_ok: bool) -> bool:
        return self.engine.drop_collection(name, missing_ok=missing_ok)

    def do_list(self) -> list[CollectionInfo]:
        return self.engine.list_collections()

    def do_describe(self, name: str) -> CollectionInfo:
        return self.engine.collection(name).info()

    def do_add_fields(self, name: str, fields: list[Any]) -> CollectionInfo:
        return self.engine.collection(name).add_fields(fields)

    def do_upsert(
        self,
        name: str,
        ids: list[str],
        vectors: Any,
        metadata: list[dict],
        fingerprint: str,
        positions: list[int],
        content_keys: list[str],
        groups: list[str] | None = None,
    ) -> int:
        """``positions`` are the items' places in the caller's request: errors name those."""
        try:
            collection = self.engine.collection(name, model_fingerprint=fingerprint)
            return collection.upsert(
                ids,
                vectors,
                metadata,
                model_fingerprint=fingerprint,
                content_keys=content_keys,
                groups=groups,
            ).count
        except InvalidArgumentError as error:
            raise renumbered(error, "items", positions.__getitem__) from None

    def do_delete(
        self,
        name: str,
        ids: list[str],
        groups: Sequence[str] = (),
        filter_: Filter | None = None,
        dry_run: bool = False,
    ) -> int:
        return self.engine.collection(name).delete(ids, groups=groups, filter_=filter_, dry_run=dry_run).count

    def do_update_metadata(
        self,
        name: str,
        ids: list[str],
        groups: list[str],
        filter_: Filter | None,
        set_: dict[str, Any],
        unset: list[str],
        dry_run: bool,
    ) -> int:
        collection = self.engine.collection(name)
        return collection.update_metadata(
            ids, groups=groups, filter_=filter_, set_=set_, unset=unset, dry_run=dry_run
        ).count

    def do_count(self, name: str, filter_: Filter | None) -> int:
        return self.engine.collection(name).count(filter_)

    def do_scroll(
        self, name: str, filter_: Filter | None, limit: int, cursor: str, include_vectors: bool
    ) -> tuple[list[StoredItem], str]:
        return self.engine.collection(name).scroll(
            filter_=filter_, limit=limit, cursor=cursor, include_vectors=include_vectors
        )

    def do_resolve(self, name: str) -> str:
        return self.engine.resolve(name)

    def do_set_alias(self, alias: str, collection: str) -> str:
        return self.engine.set_alias(alias, collection)

    def do_delete_alias(self, alias: str, missing_ok: bool) -> bool:
        return self.engine.delete_alias(alias, missing_ok=missing_ok)

    def do_list_aliases(self) -> list[Alias]:
        return self.engine.list_aliases()

    def do_get(self, name: str, ids: list[str], include_vectors: bool) -> list[StoredItem]:
        return self.engine.collection(name).get(ids, include_vectors=include_vectors, missing_ok=True)

    def do_text_search(
        self,
        name: str,
        queries: Any,
        query: TextQuery,
        width: int,
        filter_: Filter | None,
        params: SearchParams,
        fingerprint: str,
    ) -> list[list[Pooled]]:
        """This group's keyword/hybrid pools per query (stage 1 of index_service/hybrid.py)."""
        return self.engine.collection(name, model_fingerprint=fingerprint).text_candidates(
            queries, query, width, filter_=filter_, params=params, model_fingerprint=fingerprint
        )

    def do_search(
        self,
        name: str,
        queries: Any,
        width: int,
        filter_: Filter | None,
        params: SearchParams,
        fingerprint: str,
    ) -> list[list[Candidate]]:
        """This group's best ``width`` (= k + offset) candidates per query; the router merges."""
        return self.engine.collection(name, model_fingerprint=fingerprint).candidates(
            queries, width, filter_=filter_, params=params, model_fingerprint=fingerprint
        )
