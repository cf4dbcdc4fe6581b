"""The HTTP side of the search page: one HTML page, its static files and a small JSON API.

    GET  /                         the page (static/index.html)
    GET  /api/status               services and collection, for the page header
    GET  /api/search/text?q=       search by text
    POST /api/search/image         search by image; the body is the image file
    GET  /api/search/similar?id=   more like this product
    GET  /api/image?id=            a product's image (only products stored in the collection)

Searches take ``k``, ``page``, ``mode`` and one parameter per filter of the collection's
schema (:mod:`clipsearch.apps.ui.params`); they answer products, each with its pictures.
Every failure is JSON ``{"error": message}``; tracebacks stay in the server log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clipsearch.apps.ui.page import PageError, Results, SearchPage
from clipsearch.apps.ui.params import SearchParams
from clipsearch.apps.ui.settings import UISettings

STATIC_DIR = resources.files("clipsearch.apps.ui") / "static"

#: The page loads only its own scripts, styles and images (plus previews of the visitor's file).
SECURITY_HEADERS = {
    "content-security-policy": (
        # Product images may live on a shop's CDN (https); images cannot run code.
        "default-src 'self'; img-src 'self' blob: https:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def create_app(settings: UISettings, page: SearchPage | None = None) -> Starlette:
    """The page's ASGI app; it owns (and closes) ``page`` unless one is passed in."""
    owned = page is None
    page = page or SearchPage(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        if owned:
            page.close()

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), headers={"cache-control": "no-cache"})

    async def status(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(page.status))

    async def search_text(request: Request) -> Response:
        text = request.query_params.get("q", "")
        return await _search(page, request, page.search_text, text)

    async def search_image(request: Request) -> Response:
        data = await _read_body(request, settings.max_upload_bytes, page.too_large_message())
        return await _search(page, request, page.search_image, data)

    async def similar(request: Request) -> Response:
        item_id = request.query_params.get("id", "")
        return await _search(page, request, page.more_like_this, item_id)

    async def image(request: Request) -> Response:
        item_id = request.query_params.get("id", "")
        path, media_type = await run_in_threadpool(page.image_file, item_id)
        return FileResponse(path, media_type=media_type, headers={"cache-control": "private, max-age=300"})

    routes = [
        Route("/", index),
        Route("/api/status", status),
        Route("/api/search/text", search_text),
        Route("/api/search/image", search_image, methods=["POST"]),
        Route("/api/search/similar", similar),
        Route("/api/image", image),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={PageError: _page_error, 404: _not_found, Exception: _unexpected},
    )
    app.add_middleware(_SecurityHeaders)
    app.state.page = page
    return app


async def _search(
    page: SearchPage, request: Request, operation: Callable[[Any, SearchParams], Results], query: Any
) -> Response:
    started = time.perf_counter()
    params = await run_in_threadpool(page.params, request.query_params)
    results = await run_in_threadpool(operation, query, params)
    answer: dict[str, Any] = {
        "hits": results.hits,
        "has_more": results.has_more,
        "page": params.page,
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if results.source is not None:
        answer["source"] = results.source
    return JSONResponse(answer)


async def _read_body(request: Request, limit: int, too_large: str) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PageError(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PageError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


async def _page_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PageError)
    return JSONResponse({"error": error.message}, status_code=error.status)


async def _not_found(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": f"No such page: {request.url.path}"}, status_code=404)


async def _unexpected(request: Request, error: Exception) -> Response:
    # Starlette re-raises the error after this answer, so the server logs its traceback.
    return JSONResponse(
        {"error": "Something went wrong on the search page's server; the details are in its log."},
        status_code=500,
    )


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
