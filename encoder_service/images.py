"""Safe decoding of untrusted image bytes.

Only JPEG, PNG and WebP are opened, recognised by their magic bytes before Pillow sees
them and again by Pillow restricted to those three plugins (so EPS, which shells out to
Ghostscript, and every other format never reach a decoder). The pixel count from the
header is checked against a limit before any pixel is decoded (Pillow's
``MAX_IMAGE_PIXELS`` stays on as a second line), truncated files are errors, and every
failure becomes an :class:`InvalidArgumentError` naming the input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import InvalidArgumentError
from encoder_service.weights import PILLOW_MAX_IMAGE_PIXELS

#: Pillow plugin names allowed to open anything.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = PILLOW_MAX_IMAGE_PIXELS

    @property
    def pixel_limit(self) -> int:
        """The stricter of ours and Pillow's (which is never turned off here)."""
        pillow = Image.MAX_IMAGE_PIXELS
        return min(self.max_pixels, pillow) if pillow else self.max_pixels


def sniff_format(data: bytes) -> str | None:
    """The allowed format these bytes start like, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_image_bytes(data: bytes, limits: ImageLimits, *, field: str = "image") -> str:
    """The cheap checks (size, magic bytes) before any decoding; returns the declared format."""
    if len(data) == 0:
        raise InvalidArgumentError(f"{field}: empty image (0 bytes)", field=field)
    if len(data) > limits.max_bytes:
        raise InvalidArgumentError(
            f"{field}: image of {len(data)} bytes is over the limit of {limits.max_bytes}", field=field
        )
    declared = sniff_format(data)
    if declared is None:
        raise InvalidArgumentError(
            f"{field}: not a JPEG, PNG or WebP image (starts with {data[:8].hex()})", field=field
        )
    return declared


def decode_image(data: bytes, limits: ImageLimits, *, field: str = "image") -> Image.Image:
    """Decodes to an RGB image with EXIF orientation applied, or raises InvalidArgumentError."""
    declared = check_image_bytes(data, limits, field=field)
    try:
        opened = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InvalidArgumentError(f"{field}: decompression bomb refused ({exc})", field=field) from None
    except UnidentifiedImageError:
        raise InvalidArgumentError(f"{field}: corrupt or unreadable {declared} image", field=field) from None
    except Exception as exc:  # any failure to parse untrusted bytes is the caller's input
        raise InvalidArgumentError(f"{field}: cannot decode {declared} image ({exc})", field=field) from None
    try:
        width, height = opened.size
        if width * height > limits.pixel_limit:
            raise InvalidArgumentError(
                f"{field}: {width}x{height} image has {width * height} pixels, over the limit of "
                f"{limits.pixel_limit} (decompression bomb?)",
                field=field,
            )
        if opened.format not in ALLOWED_FORMATS:
            raise InvalidArgumentError(f"{field}: format {opened.format} is not allowed", field=field)
        opened.load()  # raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
        upright = ImageOps.exif_transpose(opened)
        return upright if upright.mode == "RGB" and upright is not opened else upright.convert("RGB")
    except InvalidArgumentError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"{field}: cannot decode {declared} image ({exc})", field=field) from None
    finally:
        opened.close()
