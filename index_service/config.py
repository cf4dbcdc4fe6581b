"""Collection settings and the plain values the core returns (no gRPC, no protobuf)."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from clipsearch.errors import InvalidArgumentError
from clipsearch.schema import Schema

NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_DIMENSION = 65_536
MAX_SHARDS = 256
MAX_ID_BYTES = 512
MAX_CONTENT_KEY_BYTES = 256
#: The informational strings of a collection's config (a fingerprint is 71 characters).
MAX_MODEL_TEXT_BYTES = {"model_fingerprint": 128, "model_name": 256, "model_pretrained": 1024}

MetadataValue = str | float | bool | list[str]


class Metric(enum.IntEnum):
    """Same numbers as ``clipsearch.v1.Metric``."""

    #: Not given: a new collection gets COSINE; an existing one keeps its own.
    UNSPECIFIED = 0
    COSINE = 1
    INNER_PRODUCT = 2
    L2 = 3


@dataclass(frozen=True)
class CollectionConfig:
    name: str
    dimension: int
    #: UNSPECIFIED, 0 and "" mean "the default" for a new collection (validated() fills them in)
    #: and "whatever it has" when asking for an existing one (exist_ok).
    metric: Metric = Metric.UNSPECIFIED
    num_shards: int = 0
    index_spec: str = ""
    model_fingerprint: str = ""
    model_name: str = ""
    #: The metadata fields and their types; None until declared or set by the first write.
    schema: Schema | None = None
    model_pretrained: str = ""

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
        for name, most in MAX_MODEL_TEXT_BYTES.items():  # stored with the collection, shown by every List
            size = len(getattr(self, name).encode("utf-8", "surrogatepass"))
            if size > most:
                raise InvalidArgumentError(
                    f"config.{name}: at most {most} bytes, got {size}", field=f"config.{name}"
                )
        return replace(self, metric=metric, num_shards=shards, index_spec=spec)

    def differences(self, asked: CollectionConfig) -> list[str]:
        """The settings ``asked`` gives that differ from these, each with both values.

        A setting ``asked`` leaves unspecified (0, "", no schema) is not compared: "create if
        missing, else use it as it is". The informational model name is never compared.
        """
        found = []
        for name in ("dimension", "metric", "num_shards", "index_spec", "model_fingerprint"):
            mine, theirs = getattr(self, name), getattr(asked, name)
            if theirs and theirs != mine:
                shown = (
                    (Metric(mine).name.lower(), Metric(theirs).name.lower())
                    if name == "metric"
                    else (mine, theirs)
                )
                found.append(f"{name} is {shown[0]!r} (asked: {shown[1]!r})")
        if asked.schema is not None and asked.schema != self.schema:
            mine_text = self.schema.to_json() if self.schema is not None else "none"
            found.append(f"schema is {mine_text} (asked: {asked.schema.to_json()})")
        return found

    def to_json(self) -> str:
        data = asdict(self)
        data["metric"] = self.metric.name
        data["schema"] = self.schema.to_dict() if self.schema is not None else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CollectionConfig:
        data = json.loads(text)
        data["metric"] = Metric[data["metric"]]
        schema = data.pop("schema", None)  # absent: a collection made before schemas
        return cls(**data, schema=Schema.from_dict(schema) if schema is not None else None)


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
    #: Why the collection is set aside (index_service/quarantine.py); empty when it serves.
    quarantine: str = ""
    #: The aliases pointing at it (index_service/aliases.py).
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredItem:
    id: str
    metadata: dict[str, MetadataValue]
    vector: Any = None  # np.ndarray when asked for
    content_key: str = ""
    #: The product the item is one vector of ("" for none).
    group: str = ""


@dataclass(frozen=True)
class Explanation:
    """Why a hit is where it is (keyword and hybrid searches; index_service/hybrid.py)."""

    #: Each side's own score and 1-based rank; None where that side did not score the item.
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    fused_score: float = 0.0
    #: Query words the item matched ("rde→red" where a typo was corrected).
    matched_terms: tuple[str, ...] = ()
    #: Keyword fields whose whole value the query names (a SKU).
    exact_fields: tuple[str, ...] = ()
    boosted: bool = False


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    group: str = ""
    explanation: Explanation | None = None
    #: The stored JSON ``metadata`` was decoded from ("" when built otherwise): the server
    #: serializes a row's metadata once and reuses the bytes (index_service/convert.py).
    stored_metadata: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class HitGroup:
    """One product of a grouped search: its key (the items' group, else the id) and best hits."""

    group: str
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class SearchParams:
    """Zero means the index's default; a knob that does not apply to the index is ignored."""

    ef_search: int = 0
    nprobe: int = 0


@dataclass(frozen=True)
class WriteResult:
    count: int
    sequence: int
