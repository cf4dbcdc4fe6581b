"""Log lines of every clipsearch server: text or one JSON object per line, with the request id.

Standard library only, so the search page (no gRPC server) logs the same way.
"""

from __future__ import annotations

import json
import logging

from clipsearch.request_context import current_request_id

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the call being served."""

    _EXTRA = ("rpc_method", "code", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key in self._EXTRA:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        parts = [f"{key}={getattr(record, key)}" for key in JsonFormatter._EXTRA if hasattr(record, key)]
        request_id = current_request_id.get()
        if request_id:
            parts.append(f"request_id={request_id}")
        return f"{text} {' '.join(parts)}" if parts else text


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Root logging for a server process: ``text`` or ``json`` lines on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
