"""Images and hostile payloads made by the tests (nothing is downloaded or committed)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (48, 40), color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    # A diagonal stripe so that crops and flips change the pixels.
    for i in range(min(size)):
        image.putpixel((i, i), (255 - color[0], 255 - color[1], 255 - color[2]))
    image.save(buffer, fmt)
    return buffer.getvalue()


def colored_images(count: int, fmt: str = "PNG") -> list[bytes]:
    return [
        image_bytes(fmt, color=((37 * i) % 256, (91 * i) % 256, (53 * i + 17) % 256)) for i in range(count)
    ]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def real_bomb_png(side: int = 9500) -> bytes:
    """A valid 1-bit PNG of side x side pixels (90 Mpx for 9500): ~11 kB that decodes to 90 MB RGB."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def corrupt_png_header() -> bytes:
    data = bytearray(image_bytes("PNG"))
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


def corrupt_jpeg_header() -> bytes:
    data = bytearray(image_bytes("JPEG", size=(64, 64)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero width and height
    return bytes(data)


def truncated(fmt: str) -> bytes:
    data = image_bytes(fmt, size=(128, 128))
    return data[: len(data) // 2]


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
#: PNG magic followed by PostScript: must not reach any decoder but PNG's (which refuses it).
PNG_MAGIC_THEN_EPS = b"\x89PNG\r\n\x1a\n" + EPS


@functools.cache
def hostile_images(max_image_bytes: int) -> dict[str, bytes]:
    """name -> image bytes every one of which must be refused with INVALID_ARGUMENT."""
    return {
        "zero-bytes": b"",
        "eps": EPS,
        "png-magic-then-eps": PNG_MAGIC_THEN_EPS,
        "gif": image_bytes("GIF"),
        "bmp": image_bytes("BMP"),
        "tiff": image_bytes("TIFF"),
        "truncated-jpeg": truncated("JPEG"),
        "truncated-png": truncated("PNG"),
        "corrupt-png-header": corrupt_png_header(),
        "corrupt-jpeg-header": corrupt_jpeg_header(),
        "bomb-claimed-header": png_claiming(100_000, 100_000),
        "bomb-just-over-limit": real_bomb_png(),
        "random-bytes": bytes(range(256)) * 4,
        "huge-payload": b"\xff\xd8\xff" + b"\x00" * max_image_bytes,
    }
