"""What the search page does, without HTTP: searches through the SDK, product images, messages.

Every search goes through :class:`~clipsearch.search_client.SearchClient`; this module
adds only what a page needs on top: request parameters checked into SDK arguments,
hits made safe to send to a browser (no server paths), the image file of a product
(only for ids stored in the collection), and SDK errors turned into sentences a
visitor can act on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clipsearch.apps.ui.params import SEARCH_MODES, ParamError, SearchParams, filter_fields
from clipsearch.apps.ui.settings import UISettings
from clipsearch.errors import (
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
from clipsearch.image_sources import is_url
from clipsearch.schema import Schema
from clipsearch.search_client import SearchClient
from clipsearch.types import Hit

log = logging.getLogger(__name__)

#: Seconds a status probe may take (the page header and the "which service is down" check).
PROBE_TIMEOUT_S = 3.0
#: Seconds the collection's schema (the filters' types) is reused before it is asked again.
SCHEMA_TTL_S = 30.0
#: Pictures per product a result shows (its best-matching items, as the search returns them).
IMAGES_PER_PRODUCT = 6
#: Metadata key holding the product image's location as the catalog wrote it (see clipsearch.catalog).
IMAGE_KEY = "image"
#: Metadata the page does not show: the image location, and the resume hash of releases before
#: content keys (items ingested by them still carry it until re-ingested).
_HIDDEN_KEYS = frozenset({IMAGE_KEY, "content_sha256"})
#: Image types the page serves, recognised by their first bytes (not by the file name).
_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class PageError(Exception):
    """A problem shown to the visitor: an HTTP status and a plain-language message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def hit_to_json(hit: Hit) -> dict[str, Any]:
    """A product hit as the page shows it: its pictures (best-matching first), title, score and
    metadata. An image URL is shown as it is; a file path stays on the server (the page serves
    it at ``/api/image?id=``, by item id)."""
    metadata = {key: hit.metadata[key] for key in sorted(hit.metadata) if key not in _HIDDEN_KEYS}
    images = [image for image in map(_image_json, hit.group_hits or (hit,)) if image is not None]
    return {
        "id": hit.id,
        "product": hit.product,
        "score": hit.score,
        "title": str(metadata.pop("title", hit.product)),
        "image_url": images[0]["url"] if images else None,
        "has_image": bool(images),
        "images": images,
        "metadata": metadata,
        # The query words the product matched (a text search: "rde→red" for a corrected typo).
        "matched": list(hit.explanation.matched_terms) if hit.explanation is not None else [],
    }


def _image_json(item: Hit) -> dict[str, Any] | None:
    """One picture of a product: its item id, where the browser gets it, and its score."""
    location = item.metadata.get(IMAGE_KEY)
    if not isinstance(location, str) or not location:
        return None  # a text vector (``<id>#text``) or an item without a picture
    url = location if is_url(location) else f"/api/image?id={quote(item.id, safe='')}"
    return {"id": item.id, "url": url, "score": item.score}


def sniff_image_type(head: bytes) -> str | None:
    """The media type of an encoded JPEG, PNG, GIF or WebP image from its first 12 bytes."""
    for signature, media_type in _SIGNATURES:
        if head.startswith(signature):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class Results:
    """One page of a search: the products as the browser gets them, whether more follow, and
    (more like this) the product the search started from."""

    hits: list[dict[str, Any]]
    has_more: bool
    source: dict[str, Any] | None = None


class SearchPage:
    """The page's operations over one collection; thread-safe (gRPC channels are)."""

    def __init__(self, settings: UISettings):
        self.settings = settings
        self.collection = settings.collection
        self.client = SearchClient(settings.encoder, settings.index, timeout_s=settings.timeout_s)
        self._probe = SearchClient(settings.encoder, settings.index, timeout_s=PROBE_TIMEOUT_S)
        self._schema: tuple[float, Schema | None] | None = None
        self._schema_lock = threading.Lock()

    @property
    def addresses(self) -> dict[str, str]:
        return {"encoder": self.client.encoder.address, "index": self.client.index.address}

    # -- searches ----------------------------------------------------------------------------

    def params(self, query: Mapping[str, Any]) -> SearchParams:
        """The request's parameters checked against the collection's schema; PageError(400)."""
        try:
            return SearchParams.parse(query, max_k=self.settings.max_k, schema=self.schema())
        except ParamError as error:
            raise PageError(400, str(error)) from None

    def search_text(self, text: str, params: SearchParams) -> Results:
        text = text.strip()
        if not text:
            raise PageError(400, "Type a description to search for, e.g. “a red dress”.")
        return self._search(self.client.search_text, text, params, mode=params.mode, explain=True)

    def search_image(self, data: bytes, params: SearchParams) -> Results:
        if not data:
            raise PageError(400, "Choose an image file to search with.")
        if len(data) > self.settings.max_upload_bytes:
            raise PageError(413, self.too_large_message())
        return self._search(self.client.search_image, data, params)

    def more_like_this(self, item_id: str, params: SearchParams) -> Results:
        """Products like this item's; ``source`` is its product as a hit (for the query panel)."""
        if not item_id:
            raise PageError(400, "Which product? The request names no id.")
        with self._translate_errors():
            found = self.client.index.get(self.collection, [item_id], missing_ok=True)
        if not found:
            raise PageError(404, f"No product {item_id!r} in collection {self.collection!r}.")
        item = found[0]
        results = self._search(self.client.more_like_this, item_id, params)
        source = Hit(item.id, 1.0, item.metadata, group=item.group)
        return Results(results.hits, results.has_more, hit_to_json(source))

    def _search(
        self, search: Callable[..., list[Hit]], query: Any, params: SearchParams, **options: Any
    ) -> Results:
        # One product more than the page shows says whether there is a next page.
        with self._translate_errors():
            hits = search(
                query,
                collection=self.collection,
                k=params.k + 1,
                offset=params.offset,
                filter=params.filter(),
                group_size=IMAGES_PER_PRODUCT,
                **options,
            )
        return Results([hit_to_json(hit) for hit in hits[: params.k]], len(hits) > params.k)

    def schema(self) -> Schema | None:
        """The collection's schema (None: made before schemas), asked at most every SCHEMA_TTL_S."""
        with self._schema_lock:
            cached = self._schema
            if cached is not None and time.monotonic() - cached[0] < SCHEMA_TTL_S:
                return cached[1]
        with self._translate_errors():
            schema = self.client.index.describe_collection(self.collection).schema
        self._remember_schema(schema)
        return schema

    def _remember_schema(self, schema: Schema | None) -> None:
        with self._schema_lock:
            self._schema = (time.monotonic(), schema)

    def too_large_message(self) -> str:
        limit_mib = self.settings.max_upload_bytes / (1024 * 1024)
        return f"That image is too large: the page accepts up to {limit_mib:g} MiB."

    # -- product images ----------------------------------------------------------------------

    def image_file(self, item_id: str) -> tuple[Path, str]:
        """The image file of a product stored in the collection, and its media type.

        The path comes from the stored item's metadata, never from the request, and the
        file must start like an image; anything else is a 404.
        """
        missing = PageError(404, f"No image for product {item_id!r}.")
        try:
            with self._translate_errors():
                items = self.client.index.get(self.collection, [item_id], missing_ok=True)
        except PageError as error:
            raise missing if error.status in (400, 404) else error from None
        location = items[0].metadata.get(IMAGE_KEY) if items else None
        if not isinstance(location, str) or not location or is_url(location):
            raise missing
        path = Path(location)
        if not path.is_absolute():
            if self.settings.image_root is None:
                log.warning(
                    "product %r: relative image %s and no --image-root; not served", item_id, location
                )
                raise missing
            path = Path(self.settings.image_root) / path
        try:
            if not path.is_file():
                raise missing
            with path.open("rb") as file:
                media_type = sniff_image_type(file.read(12))
        except OSError:
            raise missing from None
        if media_type is None:
            log.warning("product %r: %s is not an image; not served", item_id, path)
            raise missing
        return path, media_type

    # -- status and errors -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Whether each service answers, the model and the collection's size (header of the page)."""
        encoder: dict[str, Any] = {"address": self.addresses["encoder"], "ok": False}
        try:
            model = self._probe.encoder.model_info()
            encoder.update(ok=True, model=model.name, pretrained=model.pretrained)
        except ClipsearchError as error:
            encoder["message"] = self._service_message("encoder", error)
        index: dict[str, Any] = {"address": self.addresses["index"], "ok": False}
        try:
            info = self._probe.index.describe_collection(self.collection)
            index.update(ok=True, items=info.item_count, model=info.model_name)
            self._remember_schema(info.schema)
            filters = [f.to_json() for f in filter_fields(info.schema)]
        except ClipsearchError as error:
            index["message"] = self._service_message("index", error)
            filters = []
        limits = {"max_upload_bytes": self.settings.max_upload_bytes, "max_k": self.settings.max_k}
        return {
            "collection": self.collection,
            "encoder": encoder,
            "index": index,
            "limits": limits,
            "filters": filters,
            "modes": list(SEARCH_MODES),
        }

    def _service_message(self, service: str, error: ClipsearchError) -> str:
        address = self.addresses[service]
        if isinstance(error, (UnavailableError, DeadlineExceededError)):
            return (
                f"The {service} service at {address} is not reachable. Start it "
                f"(clipsearch serve {service}) or point the page at it with --{service} HOST:PORT."
            )
        if isinstance(error, NotFoundError) and service == "index":
            return (
                f"The index at {address} has no collection {self.collection!r}. "
                f"Ingest a catalog first: clipsearch ingest CATALOG --collection {self.collection}"
            )
        return f"The {service} service at {address} answered {error.code.name}: {error.message}"

    def _which_service_is_down(self) -> str:
        status = self.status()
        for service in ("encoder", "index"):
            if not status[service]["ok"]:
                return status[service]["message"]
        return "A service was briefly unavailable. Please try again."

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        """SDK errors as PageError with a sentence for the visitor; the details go to the log."""
        try:
            yield
        except ClipsearchError as error:
            log.warning("call to the services failed: %s: %s", error.code.name, error.message)
            raise self._page_error(error) from None

    def _page_error(self, error: ClipsearchError) -> PageError:
        if isinstance(error, UnavailableError):
            return PageError(503, self._which_service_is_down())
        if isinstance(error, DeadlineExceededError):
            return PageError(
                504,
                f"The search took longer than {self.settings.timeout_s:g} s; the services may be "
                "overloaded. Please try again.",
            )
        if isinstance(error, NotFoundError):
            if error.field == "collection":
                return PageError(404, self._service_message("index", error))
            return PageError(404, f"Not found: {error.message}")
        if isinstance(error, InvalidArgumentError):
            field = error.field or ""
            if field.endswith(".image"):  # the encoder names the input: "inputs[0].image: why"
                why = error.message.removeprefix(f"{field}: ")
                return PageError(400, f"That file could not be read as an image: {why}.")
            return PageError(400, error.message)
        if isinstance(error, FailedPreconditionError):
            return PageError(
                409,
                f"Collection {self.collection!r} does not match the encoder's model: {error.message}",
            )
        if isinstance(error, ResourceExhaustedError):
            wait = f" in {error.retry_after_s:g} s" if error.retry_after_s else ""
            return PageError(503, f"The services are busy. Please try again{wait}.")
        if isinstance(error, (UnauthenticatedError, PermissionDeniedError)):
            return PageError(
                502,
                f"The services refused the page's credentials ({error.code.name}); set a read token "
                "in $CLIPSEARCH_TOKEN for the UI server.",
            )
        return PageError(502, f"The services answered {error.code.name}: {error.message}")

    def close(self) -> None:
        self.client.close()
        self._probe.close()
