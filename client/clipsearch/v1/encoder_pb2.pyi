from clipsearch.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedInput(_message.Message):
    __slots__ = ("text", "image")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("inputs",)
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[EmbedInput]
    def __init__(self, inputs: _Optional[_Iterable[_Union[EmbedInput, _Mapping]]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model_fingerprint")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_types_pb2.Vector]
    model_fingerprint: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_types_pb2.Vector, _Mapping]]] = ..., model_fingerprint: _Optional[str] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("chunk_id", "inputs", "read_window", "responses_read")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    READ_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_READ_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[EmbedInput]
    read_window: int
    responses_read: int
    def __init__(self, chunk_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[EmbedInput, _Mapping]]] = ..., read_window: _Optional[int] = ..., responses_read: _Optional[int] = ...) -> None: ...

class EmbedResult(_message.Message):
    __slots__ = ("embedding", "error")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    embedding: _types_pb2.Vector
    error: ItemError
    def __init__(self, embedding: _Optional[_Union[_types_pb2.Vector, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("chunk_id", "results", "model_fingerprint")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    results: _containers.RepeatedCompositeFieldContainer[EmbedResult]
    model_fingerprint: str
    def __init__(self, chunk_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[EmbedResult, _Mapping]]] = ..., model_fingerprint: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "pretrained", "fingerprint", "embedding_dim", "image_size", "context_length", "device", "dtype", "preprocessing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    pretrained: str
    fingerprint: str
    embedding_dim: int
    image_size: int
    context_length: int
    device: str
    dtype: str
    preprocessing: str
    def __init__(self, name: _Optional[str] = ..., pretrained: _Optional[str] = ..., fingerprint: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., image_size: _Optional[int] = ..., context_length: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., preprocessing: _Optional[str] = ...) -> None: ...
