"""Synchronous client of ``clipsearch.v1.IndexService``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import grpc
import numpy as np

from clipsearch._calls import ServiceClient, chunks, translate_errors
from clipsearch.channel import DEFAULT_INDEX_ADDRESS, INDEX_ENV, ChannelOptions
from clipsearch.errors import InternalError, InvalidArgumentError
from clipsearch.filters import FilterSpec, build_filter
from clipsearch.schema import Field, Schema
from clipsearch.types import (
    METRICS_BY_NAME,
    SEARCH_MODES,
    Alias,
    CollectionInfo,
    Hit,
    HybridOptions,
    Item,
    Page,
)
from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import MetadataValue, metadata_to_proto, schema_to_proto, vectors_to_protos

#: Ids per Get/Delete/UpdateMetadata call (the server refuses more than --max-batch-items, 10,000).
IDS_PER_CALL = 1000
#: Default deadline of Backup and Restore: they move the whole collection.
BACKUP_TIMEOUT_S = 3600.0


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
        groups: Sequence[str] | None = None,
    ) -> int:
        """Inserts or replaces items; returns how many were written (durably, when it returns).

        ``groups`` names the product of each item (several images of one product); grouped
        searches return distinct products.
        """
        written = 0
        for request in upsert_requests(
            collection,
            ids,
            vectors,
            metadata,
            model_fingerprint=model_fingerprint,
            content_keys=content_keys,
            groups=groups,
            batch_size=self.upsert_batch_size,
        ):
            with translate_errors(self):
                written += self._stub.Upsert(request, timeout=self.timeout_s).upserted
        return written

    def delete(
        self,
        collection: str,
        ids: Sequence[str] = (),
        *,
        groups: Sequence[str] = (),
        filter: FilterSpec | None = None,
        dry_run: bool = False,
    ) -> int:
        """Deletes these ids, every item of these groups (products) and the items matching
        ``filter``; returns how many went (``dry_run``: would go). Unknown ids are not an error."""
        deleted = 0
        for request in delete_requests(collection, ids, groups, filter, dry_run):
            with translate_errors(self):
                deleted += self._stub.Delete(request, timeout=self.timeout_s).deleted
        return deleted

    def update_metadata(
        self,
        collection: str,
        ids: Sequence[str] = (),
        *,
        groups: Sequence[str] = (),
        filter: FilterSpec | None = None,
        set: Mapping[str, MetadataValue] | None = None,
        unset: Sequence[str] = (),
        dry_run: bool = False,
    ) -> int:
        """Sets and removes metadata fields of the chosen items without re-encoding anything;
        returns how many items changed (``dry_run``: would change)."""
        updated = 0
        for request in update_metadata_requests(collection, ids, groups, filter, set, unset, dry_run):
            with translate_errors(self):
                updated += self._stub.UpdateMetadata(request, timeout=self.timeout_s).updated
        return updated

    def get(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = False, missing_ok: bool = False
    ) -> list[Item]:
        """Items in request order. NOT_FOUND names unknown ids, unless ``missing_ok`` leaves them out."""
        items: list[Item] = []
        for piece in chunks(len(ids), IDS_PER_CALL):
            request = index_pb2.GetRequest(
                collection=collection,
                ids=list(ids[piece]),
                include_vectors=include_vectors,
                missing_ok=missing_ok,
            )
            with translate_errors(self):
                response = self._stub.Get(request, timeout=self.timeout_s)
            items += [Item.from_proto(item) for item in response.items]
        return items

    def count(self, collection: str, *, filter: FilterSpec | None = None) -> int:
        """How many items match ``filter`` (all of them without one)."""
        request = index_pb2.CountRequest(collection=collection, filter=build_filter(filter))
        with translate_errors(self):
            return self._stub.Count(request, timeout=self.timeout_s).count

    def scroll(
        self,
        collection: str,
        *,
        filter: FilterSpec | None = None,
        limit: int = 100,
        cursor: str = "",
        include_vectors: bool = False,
    ) -> Page:
        """One page of items in id order after ``cursor``. Correct while writes go on: every
        item present from the first page to the last comes exactly once. A page may be short;
        only an empty ``next_cursor`` means the end."""
        request = index_pb2.ScrollRequest(
            collection=collection,
            filter=build_filter(filter),
            limit=limit,
            cursor=cursor,
            include_vectors=include_vectors,
        )
        with translate_errors(self):
            response = self._stub.Scroll(request, timeout=self.timeout_s)
        return Page([Item.from_proto(item) for item in response.items], response.next_cursor)

    def iter_items(
        self,
        collection: str,
        *,
        filter: FilterSpec | None = None,
        page_size: int = 1000,
        include_vectors: bool = False,
    ) -> Iterator[Item]:
        """Every item (matching ``filter``), in id order, a page at a time (see :meth:`scroll`)."""
        cursor = ""
        while True:
            page = self.scroll(
                collection, filter=filter, limit=page_size, cursor=cursor, include_vectors=include_vectors
            )
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> str:
        """Points ``alias`` at ``collection`` (creates or switches it, atomically); returns the
        collection it pointed at before ("" if it is new)."""
        request = index_pb2.SetAliasRequest(alias=alias, collection=collection)
        with translate_errors(self):
            return self._stub.SetAlias(request, timeout=self.timeout_s).previous

    def delete_alias(self, alias: str, *, missing_ok: bool = False) -> bool:
        request = index_pb2.DeleteAliasRequest(alias=alias, missing_ok=missing_ok)
        with translate_errors(self):
            return self._stub.DeleteAlias(request, timeout=self.timeout_s).deleted

    def list_aliases(self) -> list[Alias]:
        with translate_errors(self):
            response = self._stub.ListAliases(index_pb2.ListAliasesRequest(), timeout=self.timeout_s)
        return [Alias(a.alias, a.collection, a.previous) for a in response.aliases]

    # -- backup and restore ------------------------------------------------------------------

    def backup(self, path: str | Path, *, collection: str = "", timeout_s: float | None = None) -> int:
        """Writes a consistent backup archive (tar) of one collection, or of all with their
        aliases, to ``path`` while writes go on; returns its size in bytes. The file appears
        only once it is complete."""
        target = Path(path)
        size = 0
        with partial_file(target) as (partial, handle), translate_errors(self):
            request = index_pb2.BackupRequest(collection=collection)
            for response in self._stub.Backup(request, timeout=timeout_s or BACKUP_TIMEOUT_S):
                handle.write(response.data)
                size += len(response.data)
        return finish_backup(partial, target, size, self.address)

    def restore(
        self, path: str | Path, *, rename: str = "", timeout_s: float | None = None
    ) -> list[CollectionInfo]:
        """Restores the collections of a backup archive (verified by the server before they
        serve); ``rename`` restores a one-collection archive under another name."""
        with translate_errors(self):
            response = self._stub.Restore(
                restore_requests(Path(path), rename), timeout=timeout_s or BACKUP_TIMEOUT_S
            )
        return [CollectionInfo.from_proto(c) for c in response.collections]

    # -- search ------------------------------------------------------------------------------

    def search(self, collection: str, vector: np.ndarray | Sequence[float], **kwargs) -> list[Hit]:
        """Hits for one query vector, best first. Keyword arguments as :meth:`search_batch`."""
        return self.search_batch(collection, np.asarray(vector, dtype=np.float32)[None, :], **kwargs)[0]

    def keyword_search(self, collection: str, text: str, **kwargs) -> list[Hit]:
        """Hits for the words of ``text`` alone (BM25 over the schema's text and keyword fields,
        typo tolerant; no vector). Keyword arguments as :meth:`search_batch`."""
        return self.search_batch(collection, None, texts=[text], mode="keyword", **kwargs)[0]

    def search_batch(
        self,
        collection: str,
        vectors: np.ndarray | None,
        *,
        k: int = 10,
        offset: int = 0,
        filter: FilterSpec | None = None,
        ef_search: int = 0,
        nprobe: int = 0,
        model_fingerprint: str = "",
        group_size: int | None = None,
        mode: str = "vector",
        texts: Sequence[str] = (),
        hybrid: HybridOptions | None = None,
        explain: bool = False,
        timeout_s: float | None = None,
    ) -> list[list[Hit]]:
        """Hits for each row of ``vectors``. ``filter`` takes the dict syntax of :mod:`clipsearch.filters`.

        With ``group_size``, the hits are ``k`` distinct products (groups), each its best item
        with up to ``group_size`` of its items in ``Hit.group_hits``. ``mode="hybrid"`` fuses
        each vector's hits with the keyword hits of the text at the same position in ``texts``
        (``hybrid`` tunes the fusion); ``mode="keyword"`` needs only ``texts``; ``explain``
        fills ``Hit.explanation`` (docs/hybrid.md).
        """
        request = search_request(
            collection,
            vectors,
            k=k,
            offset=offset,
            filter=filter,
            ef_search=ef_search,
            nprobe=nprobe,
            model_fingerprint=model_fingerprint,
            group_size=group_size,
            mode=mode,
            texts=texts,
            hybrid=hybrid,
            explain=explain,
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
    groups: Sequence[str] | None = None,
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
    if groups is not None and len(groups) != len(ids):
        raise InvalidArgumentError("groups must have one group per id", field="groups")
    for piece in chunks(len(ids), batch_size):
        protos = vectors_to_protos(vectors[piece])
        items = [
            index_pb2.Item(
                id=item_id,
                vector=vector,
                metadata=metadata_to_proto(metadata[piece.start + i]) if metadata is not None else None,
                content_key=content_keys[piece.start + i] if content_keys is not None else "",
                group=groups[piece.start + i] if groups is not None else "",
            )
            for i, (item_id, vector) in enumerate(zip(ids[piece], protos, strict=True))
        ]
        yield index_pb2.UpsertRequest(collection=collection, items=items, model_fingerprint=model_fingerprint)


def search_request(
    collection: str,
    vectors: np.ndarray | None,
    *,
    k: int,
    offset: int,
    filter: FilterSpec | None,
    ef_search: int,
    nprobe: int,
    model_fingerprint: str,
    group_size: int | None = None,
    mode: str = "vector",
    texts: Sequence[str] = (),
    hybrid: HybridOptions | None = None,
    explain: bool = False,
) -> index_pb2.SearchRequest:
    if mode not in SEARCH_MODES:
        raise InvalidArgumentError(f"mode must be one of {sorted(SEARCH_MODES)}, got {mode!r}", field="mode")
    if isinstance(texts, str):
        raise InvalidArgumentError("texts must be a list of strings, one per query", field="texts")
    try:
        hybrid_params = hybrid.to_proto() if hybrid is not None else None
    except ValueError as error:
        raise InvalidArgumentError(str(error), field="hybrid.fusion") from None
    return index_pb2.SearchRequest(
        collection=collection,
        queries=vectors_to_protos(np.asarray(vectors, dtype=np.float32)) if vectors is not None else [],
        k=k,
        offset=offset,
        filter=build_filter(filter),
        params=index_pb2.SearchParams(ef_search=ef_search, nprobe=nprobe),
        model_fingerprint=model_fingerprint,
        group_by=index_pb2.GroupBy(size=group_size) if group_size is not None else None,
        mode=SEARCH_MODES[mode],
        texts=list(texts),
        hybrid=hybrid_params,
        explain=explain,
    )


def hits_from_response(response: index_pb2.SearchResponse) -> list[list[Hit]]:
    """Each query's hits; a grouped search's carry their group's hits."""
    results = []
    for result in response.results:
        if result.groups:
            results.append(
                [
                    Hit.from_proto(group.hits[0], tuple(Hit.from_proto(h) for h in group.hits))
                    for group in result.groups
                ]
            )
        else:
            results.append([Hit.from_proto(hit) for hit in result.hits])
    return results


def delete_requests(
    collection: str,
    ids: Sequence[str],
    groups: Sequence[str],
    filter: FilterSpec | None,
    dry_run: bool,
) -> Iterator[index_pb2.DeleteRequest]:
    """One request, or ids in pieces of IDS_PER_CALL (the groups and filter go with the first)."""
    ids = id_list(ids, "ids")
    for first, piece in _id_pieces(ids):
        yield index_pb2.DeleteRequest(
            collection=collection,
            ids=list(ids[piece]),
            groups=list(groups) if first else [],
            filter=build_filter(filter) if first else None,
            dry_run=dry_run,
        )


def update_metadata_requests(
    collection: str,
    ids: Sequence[str],
    groups: Sequence[str],
    filter: FilterSpec | None,
    set_: Mapping[str, MetadataValue] | None,
    unset: Sequence[str],
    dry_run: bool,
) -> Iterator[index_pb2.UpdateMetadataRequest]:
    """As :func:`delete_requests`: ids in pieces, groups and filter with the first."""
    ids = id_list(ids, "ids")
    for first, piece in _id_pieces(ids):
        yield index_pb2.UpdateMetadataRequest(
            collection=collection,
            ids=list(ids[piece]),
            groups=list(groups) if first else [],
            filter=build_filter(filter) if first else None,
            set=metadata_to_proto(dict(set_ or {})),
            unset=list(unset),
            dry_run=dry_run,
        )


def id_list(ids: Sequence[str], field: str) -> list[str]:
    """``ids`` as a list of strings; a lone string or a mapping is a caller's mistake, said plainly."""
    if isinstance(ids, str | bytes | Mapping):
        raise InvalidArgumentError(
            f"{field} must be a list of id strings, got a {type(ids).__name__}", field=field
        )
    ids = list(ids)
    for i, item_id in enumerate(ids):
        if not isinstance(item_id, str):
            raise InvalidArgumentError(
                f"{field}[{i}] must be a string, got {type(item_id).__name__}", field=f"{field}[{i}]"
            )
    return ids


def _id_pieces(ids: Sequence[str]) -> Iterator[tuple[bool, slice]]:
    """(is it the first, the slice) of ``ids`` in pieces of IDS_PER_CALL; one empty piece for none."""
    pieces = list(chunks(len(ids), IDS_PER_CALL)) or [slice(0, 0)]
    for n, piece in enumerate(pieces):
        yield n == 0, piece


@contextlib.contextmanager
def partial_file(target: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """``target``.part, open for writing; removed if the block fails (a failed backup leaves no file)."""
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as handle:
            yield partial, handle
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def finish_backup(partial: Path, target: Path, size: int, address: str) -> int:
    """Renames a complete backup into place (an empty one is an error: an archive holds its manifest)."""
    if size == 0:
        partial.unlink()
        raise InternalError(f"the index at {address} sent an empty backup")
    os.replace(partial, target)
    return size


def restore_requests(path: Path, rename: str) -> Iterator[index_pb2.RestoreRequest]:
    """The archive in 1 MiB messages; ``rename`` on the first. The file is opened here, so a
    missing one raises FileNotFoundError before the call (inside it, gRPC reports UNKNOWN)."""
    return _restore_messages(open(path, "rb"), rename)


def _restore_messages(handle: BinaryIO, rename: str) -> Iterator[index_pb2.RestoreRequest]:
    with handle:
        first = True
        while True:
            data = handle.read(1 << 20)
            if not data and not first:
                return
            yield index_pb2.RestoreRequest(rename=rename if first else "", data=data)
            first = False
