"""clipsearch: multimodal product search over gRPC."""

from clipsearch.channel import ChannelOptions
from clipsearch.encoder_client import EncoderClient
from clipsearch.errors import (
    AlreadyExistsError,
    ClipsearchError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from clipsearch.index_client import IndexClient
from clipsearch.query import Query
from clipsearch.search_client import SearchClient
from clipsearch.types import CollectionInfo, Hit, IngestFailure, IngestReport, Item, ModelInfo

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "ChannelOptions",
    "ClipsearchError",
    "CollectionInfo",
    "DeadlineExceededError",
    "EncoderClient",
    "FailedPreconditionError",
    "Hit",
    "IndexClient",
    "IngestFailure",
    "IngestReport",
    "InvalidArgumentError",
    "Item",
    "ModelInfo",
    "Query",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SearchClient",
    "UnauthenticatedError",
    "UnavailableError",
]
