"""Collection settings and the plain values the core returns (no gRPC, no protobuf)."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from clipsearch.errors import InvalidArgumentError

NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_DIMENSION = 65_536
MAX_SHARDS = 256
MAX_ID_BYTES = 512

MetadataValue = str | float | bool


class Metric(enum.IntEnum):
    """Same numbers as ``clipsearch.v1.Metric``."""

    COSINE = 1
    INNER_PRODUCT = 2
    L2 = 3


@dataclass(frozen=True)
class CollectionConfig:
    name: str
    dimension: int
    metric: Metric = Metric.COSINE
    num_shards: int = 1
    index_spec: str = "Flat"
    model_fingerprint: str = ""
    model_name: str = ""

    def validated(self) -> CollectionConfig:
        """Checks every field (errors name ``config.<field>``) and fills defaults."""
        check_name(self.name, "config.name")
        if not 1 <= self.dimension <= MAX_DIMENSION:
            raise InvalidArgumentError(
                f"config.dimension must be in [1, {MAX_DIMENSION}], got {self.dimension}",
                field="config.dimension",
            )
        metric = self.metric or Metric.COSINE
        try:
            metric = Metric(metric)
        except ValueError:
            raise InvalidArgumentError(
                f"config.metric: unknown metric {metric}", field="config.metric"
            ) from None
        shards = self.num_shards or 1
        if not 1 <= shards <= MAX_SHARDS:
            raise InvalidArgumentError(
                f"config.num_shards must be in [1, {MAX_SHARDS}], got {self.num_shards}",
                field="config.num_shards",
            )
        spec = self.index_spec.strip() or "Flat"
        return replace(self, metric=metric, num_shards=shards, index_spec=spec)

    def same_settings(self, other: CollectionConfig) -> bool:
        """Equal in everything but the informational model name."""
        return replace(self, model_name="") == replace(other, model_name="")

    def to_json(self) -> str:
        data = asdict(self)
        data["metric"] = self.metric.name
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CollectionConfig:
        data = json.loads(text)
        data["metric"] = Metric[data["metric"]]
        return cls(**data)


def check_name(name: str, where: str = "collection") -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise InvalidArgumentError(
            f"{where}: collection names are 1 to 64 characters of [a-zA-Z0-9_-], got {name!r}", field=where
        )
    return name


@dataclass(frozen=True)
class ShardStats:
    shard: int
    item_count: int
    trained: bool


@dataclass(frozen=True)
class CollectionInfo:
    config: CollectionConfig
    item_count: int
    shards: tuple[ShardStats, ...]


@dataclass(frozen=True)
class StoredItem:
    id: str
    metadata: dict[str, MetadataValue]
    vector: Any = None  # np.ndarray when asked for


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchParams:
    """Zero means the index's default; a knob that does not apply to the index is ignored."""

    ef_search: int = 0
    nprobe: int = 0


@dataclass(frozen=True)
class WriteResult:
    count: int
    sequence: int
