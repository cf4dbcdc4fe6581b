"""A loopback HTTP server of product images: good, slow, huge, redirecting, wrong-type, broken, flaky."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ImageServer:
    """``base`` + ``/good/<name>`` serves ``images[name]``; other paths misbehave on purpose."""

    def __init__(self, images: dict[str, bytes]):
        self.images = images
        self.requests: list[str] = []
        self._flaky_seen: set[str] = set()
        self.base = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                body = server.images.get(name, b"")
                if kind == "good" and body:
                    self._send(200, "image/png", body)
                elif kind == "octet" and body:
                    self._send(200, "application/octet-stream", body)
                elif kind == "slow":
                    time.sleep(3)
                    self._send(200, "image/png", body)
                elif kind == "huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                elif kind == "html":
                    self._send(200, "text/html", b"<html>not an image</html>")
                elif kind == "broken":
                    self._send(200, "image/jpeg", b"\xff\xd8\xff garbage, not a jpeg")
                elif kind == "loop":
                    self.send_response(302)
                    self.send_header("Location", f"{server.base}/loop/{name}")
                    self.end_headers()
                elif kind == "moved":
                    self.send_response(301)
                    self.send_header("Location", f"{server.base}/good/{name}")
                    self.end_headers()
                elif kind == "flaky" and name not in server._flaky_seen:
                    server._flaky_seen.add(name)
                    self._send(503, "text/plain", b"try again")
                elif kind == "flaky":
                    self._send(200, "image/png", body)
                else:
                    self._send(404, "text/plain", b"no such image")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@contextmanager
def image_server(images: dict[str, bytes]) -> Iterator[ImageServer]:
    state = ImageServer(images)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
