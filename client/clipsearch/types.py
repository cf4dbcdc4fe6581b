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
    """One search result: product id, similarity (higher is closer) and metadata."""

    id: str
    score: float
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: index_pb2.Hit) -> Hit:
        return cls(id=message.id, score=message.score, metadata=metadata_from_proto(message.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "metadata": dict(self.metadata)}

    def to_proto(self) -> index_pb2.Hit:
        return index_pb2.Hit(id=self.id, score=self.score, metadata=metadata_to_proto(self.metadata))


@dataclass(frozen=True)
class Item:
    id: str
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    vector: np.ndarray | None = None
    #: What ingest made the item from (source and model), for resuming; "" when written otherwise.
    content_key: str = ""

    @classmethod
    def from_proto(cls, message: index_pb2.Item) -> Item:
        vector = vector_from_proto(message.vector) if message.vector.float32_le else None
        return cls(
            id=message.id,
            metadata=metadata_from_proto(message.metadata),
            vector=vector,
            content_key=message.content_key,
        )


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

    ingested: int = 0
    skipped: int = 0
    failed: list[IngestFailure] = field(default_factory=list)
    seconds: float = 0.0
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
