"""clipsearch: multimodal product search over gRPC.

Names are imported on first use (PEP 562), so ``import clipsearch.server.config``
and the servers' settings modules stay standard-library only, and
``import clipsearch`` itself stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ChannelOptions": "clipsearch.channel",
    "EncoderClient": "clipsearch.encoder_client",
    "IndexClient": "clipsearch.index_client",
    "SearchClient": "clipsearch.search_client",
    "Query": "clipsearch.query",
    "CollectionInfo": "clipsearch.types",
    "Explanation": "clipsearch.types",
    "Hit": "clipsearch.types",
    "HybridOptions": "clipsearch.types",
    "IngestFailure": "clipsearch.types",
    "IngestReport": "clipsearch.types",
    "Item": "clipsearch.types",
    "ModelInfo": "clipsearch.types",
    "AlreadyExistsError": "clipsearch.errors",
    "ClipsearchError": "clipsearch.errors",
    "DataLossError": "clipsearch.errors",
    "DeadlineExceededError": "clipsearch.errors",
    "FailedPreconditionError": "clipsearch.errors",
    "InvalidArgumentError": "clipsearch.errors",
    "NotFoundError": "clipsearch.errors",
    "PermissionDeniedError": "clipsearch.errors",
    "ResourceExhaustedError": "clipsearch.errors",
    "UnauthenticatedError": "clipsearch.errors",
    "UnavailableError": "clipsearch.errors",
    "UnimplementedError": "clipsearch.errors",
}

__all__ = [
    "AlreadyExistsError",
    "ChannelOptions",
    "ClipsearchError",
    "CollectionInfo",
    "DataLossError",
    "DeadlineExceededError",
    "EncoderClient",
    "Explanation",
    "FailedPreconditionError",
    "Hit",
    "HybridOptions",
    "IndexClient",
    "IngestFailure",
    "IngestReport",
    "InvalidArgumentError",
    "Item",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "Query",
    "ResourceExhaustedError",
    "SearchClient",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clipsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from clipsearch.channel import ChannelOptions
    from clipsearch.encoder_client import EncoderClient
    from clipsearch.errors import (
        AlreadyExistsError,
        ClipsearchError,
        DataLossError,
        DeadlineExceededError,
        FailedPreconditionError,
        InvalidArgumentError,
        NotFoundError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnauthenticatedError,
        UnavailableError,
        UnimplementedError,
    )
    from clipsearch.index_client import IndexClient
    from clipsearch.query import Query
    from clipsearch.search_client import SearchClient
    from clipsearch.types import (
        CollectionInfo,
        Explanation,
        Hit,
        HybridOptions,
        IngestFailure,
        IngestReport,
        Item,
        ModelInfo,
    )
