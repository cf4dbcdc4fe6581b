"""Typed results the SDK returns instead of raw protobuf messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from clipsearch.schema import Schema
from clipsearch.v1 import encoder_pb2, index_pb2
from clipsearch.wire import (
    MetadataValue,
    metadata_from_proto,
    metadata_to_proto,
    schema_from_proto,
    vector_from_proto,
)

METRIC_NAMES = {
    index_pb2.METRIC_COSINE: "cosine",
    index_pb2.METRIC_INNER_PRODUCT: "inner_product",
    index_pb2.METRIC_L2: "l2",
}
METRICS_BY_NAME = {name: value for value, name in METRIC_NAMES.items()}


#: Search modes (``mode=`` of the search calls): by the query vector, by the query's words
#: (BM25 over the schema's text and keyword fields, typo tolerant), or both fused.
SEARCH_MODES = {
    "vector": index_pb2.SEARCH_MODE_VECTOR,
    "keyword": index_pb2.SEARCH_MODE_KEYWORD,
    "hybrid": index_pb2.SEARCH_MODE_HYBRID,
}
FUSION_METHODS = {"weighted": index_pb2.FUSION_METHOD_WEIGHTED, "rrf": index_pb2.FUSION_METHOD_RRF}


@dataclass(frozen=True)
class HybridOptions:
    """How a hybrid search fuses its two candidate lists (docs/hybrid.md); None: the server's default.

    ``fusion``: ``"weighted"`` (each side's scores scaled to [0, 1], weighted and summed) or
    ``"rrf"`` (reciprocal rank fusion). ``boost_exact``: items whose keyword field the query
    names whole (a SKU) first. ``depth``: candidates per side (0: max(k + offset, 50)).
    ``field_weights``: BM25 weight per text or keyword field.
    """

    fusion: str = "weighted"
    vector_weight: float | None = None
    keyword_weight: float | None = None
    rank_constant: float | None = None
    boost_exact: bool | None = None
    depth: int = 0
    field_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, m: index_pb2.HybridParams) -> HybridOptions:
        """Unset fields stay None (the server's default); an unknown fusion is ValueError."""
        names = {value: name for name, value in FUSION_METHODS.items()}
        names[index_pb2.FUSION_METHOD_UNSPECIFIED] = "weighted"
        if m.fusion not in names:
            raise ValueError(f"fusion: unknown method {m.fusion}")
        return cls(
            fusion=names[m.fusion],
            vector_weight=m.vector_weight if m.HasField("vector_weight") else None,
            keyword_weight=m.keyword_weight if m.HasField("keyword_weight") else None,
            rank_constant=m.rank_constant if m.HasField("rank_constant") else None,
            boost_exact=m.boost_exact if m.HasField("boost_exact") else None,
            depth=m.depth,
            field_weights=dict(m.field_weights),
        )

    def to_proto(self) -> index_pb2.HybridParams:
        if self.fusion not in FUSION_METHODS:
            raise ValueError(f"fusion must be one of {sorted(FUSION_METHODS)}, got {self.fusion!r}")
        return index_pb2.HybridParams(
            fusion=FUSION_METHODS[self.fusion],
            vector_weight=self.vector_weight,
            keyword_weight=self.keyword_weight,
            rank_constant=self.rank_constant,
            boost_exact=self.boost_exact,
            depth=self.depth,
            field_weights=self.field_weights,
        )


@dataclass(frozen=True)
class Explanation:
    """Why a hit is where it is (``explain=True``): each side's score and 1-based rank (None
    where that side did not score it), the fused score, the query words matched (``rde→red``
    for a corrected typo), keyword fields the query named whole, and whether it was boosted."""

    vector_score: float | None
    keyword_score: float | None
    vector_rank: int | None
    keyword_rank: int | None
    fused_score: float
    matched_terms: tuple[str, ...] = ()
    exact_fields: tuple[str, ...] = ()
    boosted: bool = False

    @classmethod
    def from_proto(cls, m: index_pb2.HitExplanation) -> Explanation:
        return cls(
            vector_score=m.vector_score if m.HasField("vector_score") else None,
            keyword_score=m.keyword_score if m.HasField("keyword_score") else None,
            vector_rank=m.vector_rank if m.HasField("vector_rank") else None,
            keyword_rank=m.keyword_rank if m.HasField("keyword_rank") else None,
            fused_score=m.fused_score,
            matched_terms=tuple(m.matched_terms),
            exact_fields=tuple(m.exact_fields),
            boosted=m.boosted,
        )

    def to_proto(self) -> index_pb2.HitExplanation:
        return index_pb2.HitExplanation(
            vector_score=self.vector_score,
            keyword_score=self.keyword_score,
            vector_rank=self.vector_rank,
            keyword_rank=self.keyword_rank,
            fused_score=self.fused_score,
            matched_terms=self.matched_terms,
            exact_fields=self.exact_fields,
            boosted=self.boosted,
        )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    pretrained: str
    fingerprint: str
    embedding_dim: int
    image_size: int
    context_length: int
    device: str
    dtype: str
    preprocessing: str = ""

    @classmethod
    def from_proto(cls, message: encoder_pb2.ModelInfo) -> ModelInfo:
        return cls(
            name=message.name,
            pretrained=message.pretrained,
            fingerprint=message.fingerprint,
            embedding_dim=message.embedding_dim,
            image_size=message.image_size,
            context_length=message.context_length,
            device=message.device,
            dtype=message.dtype,
            preprocessing=message.preprocessing,
        )


@dataclass(frozen=True)
class Hit:
    """One search result: item id, similarity (higher is closer) and metadata.

    In a grouped search (products with several images), a hit is its product's best item:
    ``group`` is the product and ``group_hits`` its best items (this one first).
    """

    id: str
    score: float
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    group: str = ""
    group_hits: tuple[Hit, ...] = ()
    #: With ``explain=True``.
    explanation: Explanation | None = None

    @property
    def product(self) -> str:
        """The product this hit stands for: its group, else its id."""
        return self.group or self.id

    @classmethod
    def from_proto(cls, message: index_pb2.Hit, group_hits: tuple[Hit, ...] = ()) -> Hit:
        return cls(
            id=message.id,
            score=message.score,
            metadata=metadata_from_proto(message.metadata),
            group=message.group,
            group_hits=group_hits,
            explanation=Explanation.from_proto(message.explanation)
            if message.HasField("explanation")
            else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "score": self.score, "metadata": dict(self.metadata)}
        if self.group:
            data["group"] = self.group
        if len(self.group_hits) > 1:  # one is this hit itself
            data["group_hits"] = [h.to_dict() for h in self.group_hits]
        if self.explanation is not None:
            data["explanation"] = asdict(self.explanation)
        return data

    def to_proto(self) -> index_pb2.Hit:
        return index_pb2.Hit(
            id=self.id,
            score=self.score,
            metadata=metadata_to_proto(self.metadata),
            group=self.group,
            explanation=self.explanation.to_proto() if self.explanation is not None else None,
        )


@dataclass(frozen=True)
class Item:
    id: str
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    vector: np.ndarray | None = None
    #: What ingest made the item from (source and model), for resuming; "" when written otherwise.
    content_key: str = ""
    #: The product the item is one vector of ("" when it is its own).
    group: str = ""

    @classmethod
    def from_proto(cls, message: index_pb2.Item) -> Item:
        vector = vector_from_proto(message.vector) if message.vector.float32_le else None
        return cls(
            id=message.id,
            metadata=metadata_from_proto(message.metadata),
            vector=vector,
            content_key=message.content_key,
            group=message.group,
        )

    def to_dict(self, *, vectors: bool = False) -> dict[str, Any]:
        """JSON-ready (``clipsearch export``): id, group, metadata, and the vector when asked."""
        data: dict[str, Any] = {"id": self.id}
        if self.group:
            data["group"] = self.group
        data["metadata"] = dict(self.metadata)
        if vectors and self.vector is not None:
            data["vector"] = [float(x) for x in self.vector]
        return data


@dataclass(frozen=True)
class Page:
    """One page of :meth:`IndexClient.scroll`; pass ``next_cursor`` for the next ("" at the end)."""

    items: list[Item]
    next_cursor: str


@dataclass(frozen=True)
class Alias:
    alias: str
    collection: str
    #: Where the alias pointed before its last switch (until that collection is dropped).
    previous: str = ""


@dataclass(frozen=True)
class ShardInfo:
    shard: int
    item_count: int
    trained: bool


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dimension: int
    metric: str
    num_shards: int
    index_spec: str
    model_fingerprint: str
    model_name: str
    item_count: int
    shards: tuple[ShardInfo, ...] = ()
    #: The metadata fields and their types; None for a collection made before schemas.
    schema: Schema | None = None
    model_pretrained: str = ""
    #: Why the collection is quarantined (set aside, refusing calls); empty when it serves.
    quarantine: str = ""
    #: The aliases that point at it.
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, message: index_pb2.CollectionInfo) -> CollectionInfo:
        config = message.config
        return cls(
            name=config.name,
            dimension=config.dimension,
            metric=METRIC_NAMES.get(config.metric, "unspecified"),
            num_shards=config.num_shards,
            index_spec=config.index_spec,
            model_fingerprint=config.model_fingerprint,
            model_name=config.model_name,
            item_count=message.item_count,
            shards=tuple(ShardInfo(s.shard, s.item_count, s.trained) for s in message.shards),
            schema=schema_from_proto(config.schema) if config.HasField("schema") else None,
            model_pretrained=config.model_pretrained,
            quarantine=message.quarantine,
            aliases=tuple(message.aliases),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the schema as its file format (``clipsearch collections describe``)."""
        data = asdict(self)
        data["schema"] = self.schema.to_dict() if self.schema is not None else None
        return data


@dataclass(frozen=True)
class IngestFailure:
    row: int
    id: str
    reason: str
    #: What kind of failure, for the summary ("image not found", "bad value", ...).
    kind: str = "failed"
    #: The row as read from the catalog (for the failed-rows file); empty when not from a catalog.
    record: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class IngestReport:
    """What an ingest did. ``failed`` rows were reported and skipped, never fatal."""

    #: Items embedded and written (with ``dry_run``: that would be).
    ingested: int = 0
    #: Items unchanged, left alone.
    skipped: int = 0
    failed: list[IngestFailure] = field(default_factory=list)
    seconds: float = 0.0
    #: Items whose metadata changed but image did not: rewritten with their stored vectors.
    updated: int = 0
    #: Items deleted because the catalog no longer has them (``sync``).
    deleted: int = 0
    #: Nothing was written: the counts say what a real run would do.
    dry_run: bool = False
    #: The collection's schema the rows were checked against.
    schema: Schema | None = None
    #: Fields this ingest added to the schema (the catalog's new columns).
    added_fields: list[str] = field(default_factory=list)
    #: Things worth knowing about the catalog (why a column is not a number, ...).
    notes: list[str] = field(default_factory=list)
    #: The model that made the vectors: "name (pretrained)".
    model: str = ""

    @property
    def rate(self) -> float:
        return self.ingested / self.seconds if self.seconds > 0 else 0.0

    def failures_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for failure in self.failed:
            counts[failure.kind] = counts.get(failure.kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))
