from clipsearch.v1 import encoder_pb2 as _encoder_pb2
from clipsearch.v1 import index_pb2 as _index_pb2
from clipsearch.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchOptions(_message.Message):
    __slots__ = ("collection", "k", "offset", "filter", "params", "group_size", "ungrouped", "mode", "hybrid", "explain")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    UNGROUPED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HYBRID_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    k: int
    offset: int
    filter: _index_pb2.Filter
    params: _index_pb2.SearchParams
    group_size: int
    ungrouped: bool
    mode: _index_pb2.SearchMode
    hybrid: _index_pb2.HybridParams
    explain: bool
    def __init__(self, collection: _Optional[str] = ..., k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[_index_pb2.Filter, _Mapping]] = ..., params: _Optional[_Union[_index_pb2.SearchParams, _Mapping]] = ..., group_size: _Optional[int] = ..., ungrouped: _Optional[bool] = ..., mode: _Optional[_Union[_index_pb2.SearchMode, str]] = ..., hybrid: _Optional[_Union[_index_pb2.HybridParams, _Mapping]] = ..., explain: _Optional[bool] = ...) -> None: ...

class SearchTextRequest(_message.Message):
    __slots__ = ("text", "options")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    options: SearchOptions
    def __init__(self, text: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchTextResponse(_message.Message):
    __slots__ = ("hits", "groups")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_index_pb2.Hit]
    groups: _containers.RepeatedCompositeFieldContainer[_index_pb2.HitGroup]
    def __init__(self, hits: _Optional[_Iterable[_Union[_index_pb2.Hit, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[_index_pb2.HitGroup, _Mapping]]] = ...) -> None: ...

class SearchImageRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    options: SearchOptions
    def __init__(self, image: _Optional[bytes] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchImageResponse(_message.Message):
    __slots__ = ("hits", "groups")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_index_pb2.Hit]
    groups: _containers.RepeatedCompositeFieldContainer[_index_pb2.HitGroup]
    def __init__(self, hits: _Optional[_Iterable[_Union[_index_pb2.Hit, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[_index_pb2.HitGroup, _Mapping]]] = ...) -> None: ...

class WeightedInput(_message.Message):
    __slots__ = ("input", "weight")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    input: _encoder_pb2.EmbedInput
    weight: float
    def __init__(self, input: _Optional[_Union[_encoder_pb2.EmbedInput, _Mapping]] = ..., weight: _Optional[float] = ...) -> None: ...

class SearchHybridRequest(_message.Message):
    __slots__ = ("parts", "options")
    PARTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[WeightedInput]
    options: SearchOptions
    def __init__(self, parts: _Optional[_Iterable[_Union[WeightedInput, _Mapping]]] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchHybridResponse(_message.Message):
    __slots__ = ("hits", "groups")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_index_pb2.Hit]
    groups: _containers.RepeatedCompositeFieldContainer[_index_pb2.HitGroup]
    def __init__(self, hits: _Optional[_Iterable[_Union[_index_pb2.Hit, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[_index_pb2.HitGroup, _Mapping]]] = ...) -> None: ...

class MoreLikeThisRequest(_message.Message):
    __slots__ = ("id", "options")
    ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    options: SearchOptions
    def __init__(self, id: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class MoreLikeThisResponse(_message.Message):
    __slots__ = ("hits", "groups")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_index_pb2.Hit]
    groups: _containers.RepeatedCompositeFieldContainer[_index_pb2.HitGroup]
    def __init__(self, hits: _Optional[_Iterable[_Union[_index_pb2.Hit, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[_index_pb2.HitGroup, _Mapping]]] = ...) -> None: ...

class IngestItem(_message.Message):
    __slots__ = ("id", "image", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.MetadataValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    image: bytes
    metadata: _containers.MessageMap[str, _types_pb2.MetadataValue]
    def __init__(self, id: _Optional[str] = ..., image: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, _types_pb2.MetadataValue]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("collection", "items")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ...) -> None: ...

class IngestFailure(_message.Message):
    __slots__ = ("id", "code", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    code: int
    message: str
    def __init__(self, id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("ingested", "skipped", "failures", "updated")
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    ingested: int
    skipped: int
    failures: _containers.RepeatedCompositeFieldContainer[IngestFailure]
    updated: int
    def __init__(self, ingested: _Optional[int] = ..., skipped: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[IngestFailure, _Mapping]]] = ..., updated: _Optional[int] = ...) -> None: ...
