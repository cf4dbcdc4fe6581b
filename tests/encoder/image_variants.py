"""One picture written the ways real shop files come, each with the picture a person sees.

Every builder takes what should be *seen* (an RGB image, or an RGBA cut-out plus the page
colour it is shown on) and returns encoded bytes whose correct decoding is that picture:
cut-outs with black or white under the transparency, 16-bit PNGs, palette PNGs with tRNS,
CMYK JPEGs (Adobe's inverted polarity, with and without the Adobe marker), JPEGs stored
rotated with an EXIF orientation that turns them upright, and PNGs in Display P3 with its
ICC profile. Nothing is downloaded or committed; `benchmarks/quality.py` uses these too.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
ORIENTATION = 0x0112


def png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


def jpeg(image: Image.Image, quality: int = 95, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **options)
    return out.getvalue()


# -- transparency ---------------------------------------------------------------------------


def flatten(cutout: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """The reference: ``cutout`` (RGBA, straight alpha) over ``background``, in float, rounded."""
    pixels = np.asarray(cutout.convert("RGBA"), np.float64)
    alpha = pixels[..., 3:] / 255
    seen = pixels[..., :3] * alpha + np.asarray(background, np.float64) * (1 - alpha)
    return Image.fromarray(np.round(seen).astype(np.uint8))


def with_under(cutout: Image.Image, under: tuple[int, int, int]) -> Image.Image:
    """The same cut-out with colour ``under`` stored beneath its fully transparent pixels."""
    pixels = np.array(cutout.convert("RGBA"))
    pixels[pixels[..., 3] == 0, :3] = under
    return Image.fromarray(pixels)


def cutout_png(cutout: Image.Image, under: tuple[int, int, int] = BLACK) -> bytes:
    return png(with_under(cutout, under))


def grey_cutout_png(cutout: Image.Image, under: int = 0) -> bytes:
    """An LA PNG: the cut-out in grey with its alpha (ITU-R 601 luma, as Pillow's L)."""
    grey = with_under(cutout, (under,) * 3).convert("L")
    return png(Image.merge("LA", (grey, cutout.getchannel("A"))))


def palette_png_with_trns(
    cutout: Image.Image, under: tuple[int, int, int] = BLACK
) -> tuple[bytes, Image.Image]:
    """A palette PNG whose tRNS makes one entry transparent; returns (bytes, the RGBA it stands for).

    The cut-out's colours are quantized first, so the reference is the quantized cut-out.
    """
    opaque = cutout.convert("RGB").quantize(colors=255, dither=Image.Dither.NONE)
    indices = np.asarray(opaque).copy()
    indices[np.asarray(cutout.getchannel("A")) == 0] = 255  # entry 255: transparent, `under` colour
    palette = (opaque.getpalette() or [])[: 255 * 3]
    palette += [0, 0, 0] * (255 - len(palette) // 3) + list(under)
    image = Image.fromarray(indices.astype(np.uint8), "P")
    image.putpalette(palette)
    data = png(image, transparency=255)
    reference = image.convert("RGB").convert("RGBA")
    reference.putalpha(Image.fromarray(np.where(indices == 255, 0, 255).astype(np.uint8)))
    return data, reference


# -- 16-bit samples -------------------------------------------------------------------------


def grey16(grey: Image.Image) -> np.ndarray:
    """8-bit grey -> the 16-bit samples a 16-bit file of the same picture holds (v * 257)."""
    return np.asarray(grey.convert("L"), np.uint16) * 257


def grey16_png(samples: np.ndarray, transparent: int | None = None) -> bytes:
    """A 16-bit greyscale PNG of ``samples`` (uint16), written with Pillow's I;16 mode."""
    options = {} if transparent is None else {"transparency": transparent}
    return png(Image.fromarray(samples.astype(np.uint16)), **options)


def rgb16_png(samples: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG of ``samples`` ((h, w, 3) uint16), written by hand (Pillow cannot)."""
    height, width, _ = samples.shape
    rows = samples.astype(">u2").reshape(height, width * 6 // 2).view(np.uint8).reshape(height, width * 6)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# -- CMYK and EXIF JPEGs --------------------------------------------------------------------


def cmyk_jpeg(
    rgb: Image.Image, *, adobe_marker: bool = True, quality: int = 95, icc_profile: bytes | None = None
) -> bytes:
    """A CMYK JPEG of ``rgb`` (Pillow's plain RGB -> CMYK) as Photoshop writes them: inverted
    samples (Adobe polarity) and an Adobe APP14 marker. Without the marker the samples stay
    inverted: Pillow and browsers read every CMYK JPEG with Adobe polarity."""
    options = {} if icc_profile is None else {"icc_profile": icc_profile}
    data = jpeg(rgb.convert("CMYK"), quality, **options)
    if adobe_marker:
        return data
    return strip_segment(data, 0xFFEE, b"Adobe")


def strip_segment(data: bytes, marker: int, prefix: bytes) -> bytes:
    """``data`` without its JPEG segments of ``marker`` whose payload starts with ``prefix``."""
    out, position = bytearray(data[:2]), 2
    while position < len(data):
        code, length = struct.unpack(">HH", data[position : position + 4])
        end = position + 2 + length
        if not (code == marker and data[position + 4 : end].startswith(prefix)):
            out += data[position:end]
        if code == 0xFFDA:  # start of scan: the rest is entropy-coded data
            out += data[end:]
            break
        position = end
    return bytes(out)


#: Orientation tag -> how the stored pixels are turned from the upright picture (the inverse
#: of what the tag tells a viewer to do).
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it 90° clockwise; stored turned counter-clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_rotated_jpeg(rgb: Image.Image, orientation: int, quality: int = 95) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation that shows ``rgb`` upright."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return jpeg(rgb.transpose(_STORED[orientation]), quality, exif=exif, subsampling=0)


# -- ICC profiles ---------------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _mluc(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(encoded), 28) + encoded


#: The sRGB transfer curve as an ICC parametric curve (type 3: g, a, b, c, d).
_SRGB_CURVE = (
    b"para\0\0\0\0"
    + struct.pack(">HH", 3, 0)
    + b"".join(_s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
)


def display_p3_profile() -> bytes:
    """An ICC v4 matrix/TRC profile of Display P3 (P3 primaries, D65, sRGB curve), built here.

    Colourants are Display P3's, chromatically adapted to the D50 connection space (the
    values Apple's Display P3 profile carries).
    """
    return _profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        [
            (b"desc", _mluc("Display P3 (clipsearch tests)")),
            (b"cprt", _mluc("No copyright, use freely")),
            (b"wtpt", _xyz(*_D50)),
            (b"rXYZ", _xyz(0.515121, 0.241182, -0.001050)),
            (b"gXYZ", _xyz(0.291977, 0.692245, 0.041885)),
            (b"bXYZ", _xyz(0.157104, 0.066574, 0.784073)),
            (b"rTRC", _SRGB_CURVE),
            (b"gTRC", _SRGB_CURVE),
            (b"bTRC", _SRGB_CURVE),
        ],
    )


def cmyk_profile() -> bytes:
    """A CMYK printer profile (A2B0 as a 2-point lut16 to Lab), built here.

    Its 16 corners are what the ink combinations look like on paper with a slightly warm
    white and a black of L* 12 (not 0), so converting through it differs visibly from Pillow's
    plain CMYK -> RGB arithmetic while paper stays near white and solid inks keep their hue.
    """
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    r, g, b = ((1 - ink) * (1 - k) for ink in (c, m, y))
                    corners.append((r, g, b))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    swatch = Image.new("RGB", (16, 1))
    swatch.putdata([tuple(round(v * 255) for v in rgb) for rgb in corners])
    # Pillow's LAB: L* scaled to 0..255, a* and b* as signed bytes.
    lab_corners = np.asarray(ImageCms.profileToProfile(swatch, srgb, lab, outputMode="LAB"))[0]
    clut = []
    for lightness, a, b in zip(
        lab_corners[:, 0] / 255 * 100,
        lab_corners[:, 1].view(np.int8),
        lab_corners[:, 2].view(np.int8),
        strict=True,
    ):
        lightness = 12 + lightness * (97 - 12) / 100  # solid black ink L* 12, bare paper L* 97
        a, b = int(a) + 1, int(b) + 3  # a slightly warm paper
        clut += [round(lightness / 100 * 0xFF00), (a + 128) * 256, (b + 128) * 256]  # lut16's Lab encoding
    lut = (
        b"mft2\0\0\0\0"
        + struct.pack(">BBBB", 4, 3, 2, 0)
        + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        + struct.pack(">HH", 2, 2)
        + struct.pack(">8H", *([0, 0xFFFF] * 4))
        + struct.pack(f">{len(clut)}H", *clut)
        + struct.pack(">6H", *([0, 0xFFFF] * 3))
    )
    return _profile(
        b"prtr",
        b"CMYK",
        b"Lab ",
        [
            (b"desc", _mluc("Test CMYK (clipsearch tests)")),
            (b"cprt", _mluc("No copyright, use freely")),
            (b"wtpt", _xyz(*_D50)),
            (b"A2B0", lut),
        ],
        version=0x02100000,
    )


def grey_gamma_profile(gamma: float = 1.8) -> bytes:
    """A grey display profile with a plain gamma curve (like "Gray Gamma 1.8"), built here."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    return _profile(
        b"mntr",
        b"GRAY",
        b"XYZ ",
        [
            (b"desc", _mluc(f"Gray Gamma {gamma} (clipsearch tests)")),
            (b"cprt", _mluc("No copyright, use freely")),
            (b"wtpt", _xyz(*_D50)),
            (b"kTRC", curve),
        ],
    )


_D50 = (0.9642, 1.0, 0.82491)


def _profile(
    device_class: bytes,
    space: bytes,
    connection: bytes,
    tags: list[tuple[bytes, bytes]],
    version: int = 0x04300000,
) -> bytes:
    table_end = 128 + 4 + 12 * len(tags)
    table, body, offset = [], b"", table_end
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table.append(struct.pack(">4sII", signature, offset, len(data)))
        body += data
        offset += len(data)
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sI4s4s8sI12s4s16s28s",
        table_end + len(body),
        b"\0\0\0\0",
        version,
        device_class,
        space,
        connection,
        b"\0" * 12,
        b"acsp",
        b"\0\0\0\0",
        0,
        b"\0\0\0\0",
        b"\0\0\0\0",
        b"\0" * 8,
        0,  # perceptual
        b"".join(_s15(v) for v in _D50),
        b"\0\0\0\0",
        b"\0" * 16,
        b"\0" * 28,
    )
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def to_display_p3(rgb: Image.Image) -> Image.Image:
    """``rgb`` (sRGB) with its colours re-expressed in Display P3 (what a P3 file stores)."""
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return ImageCms.profileToProfile(
        rgb.convert("RGB"), srgb, p3, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC
    )  # type: ignore[return-value]


def display_p3_png(rgb: Image.Image) -> bytes:
    """A PNG in Display P3 with its ICC profile embedded, which a browser shows as ``rgb``."""
    return png(to_display_p3(rgb), icc_profile=display_p3_profile())
