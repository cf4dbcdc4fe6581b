"""Accepts an image as a path, raw bytes or a PIL image; sends encoded bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

#: A path, encoded bytes, or a PIL.Image.Image.
ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Any


def image_bytes(image: ImageInput) -> bytes:
    """Encoded image bytes for the encoder. PIL images are sent as PNG (lossless)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL.Image.Image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"an image must be a path, bytes or a PIL image, not {type(image).__name__}")
