"""Safe decoding of untrusted image bytes into the RGB picture a person would see.

Only JPEG, PNG and WebP are opened, recognised by their magic bytes before Pillow sees
them and again by Pillow restricted to those three plugins (so EPS, which shells out to
Ghostscript, and every other format never reach a decoder). The pixel count from the
header is checked before any pixel is decoded: over Pillow's ``MAX_IMAGE_PIXELS`` it is a
decompression bomb; over ``ImageLimits.max_pixels`` (by default what the model can use,
:func:`fitting_pixels`) a JPEG is decoded at a reduced size (libjpeg's 1/2, 1/4 or 1/8
scaling, to at least ``ImageLimits.reduce_to`` on each side) and a PNG or WebP, which
cannot be, is refused. A 9000x9000 PNG took ~4 s of CPU for a 64 px model. Truncated files
are errors, and every failure becomes an :class:`InvalidArgumentError` naming the input.

A decoded image is then turned into what a browser shows (:func:`to_rgb`): EXIF
orientation applied, every pixel mode converted by value (16-bit samples scaled, never
clipped), an embedded ICC profile converted to sRGB, and transparency composited onto a
background colour, white unless configured (``--image-background``). A file without
alpha, 16-bit samples or a non-sRGB profile gives exactly the pixels Pillow's plain
``convert("RGB")`` gives.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import InvalidArgumentError
from encoder_service.weights import PILLOW_MAX_IMAGE_PIXELS

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without Little CMS: profiles are ignored (plain conversion)
    ImageCms = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Pillow plugin names allowed to open anything.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
_NAMED_BACKGROUNDS = {"white": WHITE, "black": BLACK}


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be, and the page colour its transparent pixels are shown on."""

    max_bytes: int = 16 * 1024 * 1024
    #: Most pixels decoded: a JPEG with more is decoded at a reduced size, a PNG or WebP refused.
    max_pixels: int = PILLOW_MAX_IMAGE_PIXELS
    #: Transparent pixels are composited onto this colour (``--image-background``).
    background: RGB = WHITE
    #: The smallest width and height a reduced JPEG keeps (twice the model's input); None: no reducing.
    reduce_to: int | None = None

    @property
    def pixel_limit(self) -> int:
        """The stricter of ours and Pillow's (which is never turned off here)."""
        pillow = Image.MAX_IMAGE_PIXELS
        return min(self.max_pixels, pillow) if pillow else self.max_pixels

    @property
    def bomb_limit(self) -> int:
        """Pixels in a header beyond which nothing is decoded, even reduced."""
        return Image.MAX_IMAGE_PIXELS or PILLOW_MAX_IMAGE_PIXELS


#: An image side of this many model inputs is all the model can use (default pixel limit).
FITTING_SIDES = 32


def fitting_pixels(image_size: int) -> int:
    """The default pixel limit for a model with ``image_size`` inputs: (32 x its side)^2, at most
    Pillow's limit (a 64 px model: 2048x2048; a 224 px one: 7168x7168)."""
    return min(PILLOW_MAX_IMAGE_PIXELS, (FITTING_SIDES * image_size) ** 2)


def parse_background(text: str) -> RGB:
    """``white``, ``black`` or ``#rrggbb`` -> an (r, g, b) tuple; ValueError otherwise."""
    value = text.strip().lower()
    if value in _NAMED_BACKGROUNDS:
        return _NAMED_BACKGROUNDS[value]
    if not re.fullmatch(r"#[0-9a-f]{6}", value):
        raise ValueError(f"expected white, black or #rrggbb, got {text!r}")
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


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
    """Decodes to the RGB image a person sees (see :func:`to_rgb`), or raises InvalidArgumentError."""
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
        pixels = width * height
        if pixels > limits.bomb_limit:
            raise InvalidArgumentError(
                f"{field}: {width}x{height} image has {pixels} pixels, over the limit of "
                f"{limits.bomb_limit} (decompression bomb?)",
                field=field,
            )
        if pixels > limits.max_pixels:
            if opened.format != "JPEG" or not limits.reduce_to:
                raise InvalidArgumentError(
                    f"{field}: {width}x{height} image has {pixels} pixels, over the limit of "
                    f"{limits.max_pixels} (--max-image-pixels; a JPEG that large is decoded at a reduced "
                    "size, a PNG or WebP cannot be)",
                    field=field,
                )
            opened.draft(None, (limits.reduce_to, limits.reduce_to))  # libjpeg scales by 1/2 to 1/8
        if opened.format not in ALLOWED_FORMATS:
            raise InvalidArgumentError(f"{field}: format {opened.format} is not allowed", field=field)
        opened.load()  # raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
        upright = ImageOps.exif_transpose(opened)  # a copy (info and palette kept), never `opened`
        return to_rgb(upright, limits.background)
    except InvalidArgumentError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"{field}: cannot decode {declared} image ({exc})", field=field) from None
    finally:
        opened.close()


# -- pixel modes -> what a browser shows ------------------------------------------------------


def to_rgb(image: Image.Image, background: RGB = WHITE) -> Image.Image:
    """The RGB picture a browser shows for ``image`` on a page of colour ``background``.

    Every mode JPEG, PNG and WebP decode to is converted by value: 1, L, P (with or without
    tRNS), PA, LA, La, RGB (with or without tRNS), RGBA, RGBa, RGBX, CMYK (Pillow reads CMYK
    JPEGs with Adobe's inverted polarity, as browsers do), YCbCr, and the 16-bit grey modes
    I;16, I;16B, I;16L, I;16N and I (0..65535 scaled to 0..255). An ICC profile in
    ``image.info`` is converted to sRGB when it changes any colour by more than one level
    (an sRGB-tagged file keeps its exact pixels); an unusable profile is ignored. Other modes
    (F, LAB, HSV: no allowed format produces them) raise ValueError.
    """
    color, alpha = _color_and_alpha(image)
    rgb = _to_srgb(color, image.info.get("icc_profile"))
    if alpha is None or alpha.getextrema()[0] == 255:  # opaque: nothing shows through
        return rgb
    return Image.composite(rgb, Image.new("RGB", rgb.size, background), alpha)


def _color_and_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(colour as L, RGB or CMYK; alpha as L or None), each by value."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _sixteen_bit_grey(image)
    if mode == "P":
        mode = "RGBA" if image.has_transparency_data else "RGB"
        image = image.convert(mode)
    elif mode in ("1", "L") and transparent:  # tRNS: one grey value is transparent
        mode, image = "LA", image.convert("LA")
    elif mode == "RGB" and transparent:  # tRNS: one colour is transparent
        mode, image = "RGBA", image.convert("RGBA")
    elif mode in ("PA", "RGBa"):  # palette + alpha; premultiplied alpha
        mode, image = "RGBA", image.convert("RGBA")
    elif mode == "La":
        mode, image = "LA", image.convert("LA")
    if mode in ("LA", "RGBA"):
        bands = image.split()
        color = Image.merge(mode[:-1], bands[:-1]) if mode == "RGBA" else bands[0]
        return color, bands[-1]
    if mode in ("L", "RGB", "CMYK"):
        return image, None
    if mode in ("1", "RGBX", "YCbCr"):
        return image.convert("RGB"), None
    raise ValueError(f"pixel mode {image.mode} is not supported")


def _sixteen_bit_grey(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """16-bit grey (Pillow gives I;16 or I depending on its version) scaled to 8 bits, rounded."""
    samples = np.asarray(image)
    values = np.clip(samples, 0, 65535).astype(np.uint32)
    grey = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    transparent = image.info.get("transparency")
    if not isinstance(transparent, int):
        return grey, None
    alpha = np.where(samples == transparent, 0, 255).astype(np.uint8)
    return grey, Image.fromarray(alpha, "L")


# -- ICC profiles -> sRGB ---------------------------------------------------------------------


def _to_srgb(color: Image.Image, profile: Any) -> Image.Image:
    """``color`` (L, RGB or CMYK) in sRGB: through its ICC profile when that is usable."""
    transform = _profile_transform(profile, color.mode) if profile else None
    if transform is not None:
        try:
            return ImageCms.applyTransform(color, transform)  # type: ignore[return-value]
        except Exception as exc:  # never fail an image over its profile
            log.debug("ICC transform failed (%s); plain conversion", exc)
    return color if color.mode == "RGB" else color.convert("RGB")


class _TransformCache:
    """Profile digest + mode -> a built transform to sRGB, or None (unusable, or sRGB already).

    Bounded, so that a stream of distinct profiles cannot grow memory. Transforms are built
    without Little CMS's one-pixel cache, which is what makes sharing them across the decode
    threads safe.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: OrderedDict[tuple[bytes, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, profile: bytes, mode: str) -> Any:
        key = (hashlib.sha256(profile).digest(), mode)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        transform = _build_transform(profile, mode)
        with self._lock:
            self._entries[key] = transform
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return transform


def _build_transform(profile: bytes, mode: str) -> Any:
    if ImageCms is None:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        transform = ImageCms.buildTransform(
            source, _SRGB, mode, "RGB", ImageCms.Intent.PERCEPTUAL, ImageCms.Flags.NOCACHE
        )
        probe = _PROBES[mode]
        shown = np.asarray(ImageCms.applyTransform(probe, transform), np.int16)
    except Exception as exc:  # a profile that does not parse or does not fit the mode: ignored
        log.debug("unusable ICC profile for a %s image (%s); plain conversion", mode, exc)
        return None
    plain = np.asarray(probe.convert("RGB"), np.int16)
    if np.abs(shown - plain).max() <= 1:
        return None  # sRGB already (or indistinguishable from it): keep the exact pixels
    return transform


def _probe_images() -> dict[str, Image.Image]:
    levels = np.linspace(0, 255, 16).round().astype(np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(64, 64, 3)
    ink = np.linspace(0, 255, 6).round().astype(np.uint8)
    cmyk = np.stack(np.meshgrid(ink, ink, ink, ink, indexing="ij"), -1).reshape(36, 36, 4)
    return {
        "L": Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L"),
        "RGB": Image.fromarray(rgb, "RGB"),
        "CMYK": Image.frombytes("CMYK", (36, 36), cmyk.tobytes()),
    }


_PROBES = _probe_images()
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")) if ImageCms is not None else None
_TRANSFORMS = _TransformCache()


def _profile_transform(profile: Any, mode: str) -> Any:
    if ImageCms is None or not isinstance(profile, bytes) or mode not in _PROBES:
        return None
    return _TRANSFORMS.get(profile, mode)
