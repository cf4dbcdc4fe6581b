"""Valid images reach the model looking like what a person sees (encoder_service.images.to_rgb).

Every input is built here with a known visible picture: shop files (cut-outs, 16-bit PNGs,
palette PNGs with tRNS, CMYK and EXIF-rotated JPEGs, Display P3 PNGs) made from a demo
catalog product, and every Pillow mode built in memory. The decoded pixels must equal the
picture (exactly for lossless files, within JPEG's error otherwise), and the trained demo
model's embedding of each file must be within cosine 0.999 of that of the picture.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import image_variants as v
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter

from clipsearch.apps.demo.catalog import make_products, render_cutout, render_product
from encoder_service import images
from encoder_service.fingerprint import PREPROCESSING_VERSION, preprocessing_policy
from encoder_service.images import ImageLimits, decode_image, parse_background, to_rgb
from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL

pytestmark = pytest.mark.unit

LIMITS = ImageLimits()
#: Embeddings of a file and of the picture it shows must be at least this close (measured:
#: >= 0.9999 for every file here; the v1 decoder gave 0.20-0.31 for cut-outs and 16-bit grey).
MIN_COSINE = 0.999
#: A lossless file decodes to its picture within 1 level (compositing rounds); a JPEG at
#: quality 95 within this mean and maximum error.
JPEG_MEAN, JPEG_MAX = 1.0, 24

# A red striped dress and a blue handbag of the seed-7 demo catalog (other colours and shapes).
PRODUCTS = [make_products(20, seed=7)[i] for i in (0, 7)]


def soft_cutout(product) -> Image.Image:
    """A cut-out with anti-aliased edges: the product's colours, alpha blurred at the border."""
    cutout = render_cutout(product)
    alpha = cutout.getchannel("A").filter(ImageFilter.GaussianBlur(1.5))
    soft = render_product(product).convert("RGBA")
    soft.putalpha(alpha)
    return v.with_under(soft, v.BLACK)


@dataclass(frozen=True)
class Case:
    data: bytes
    #: What a person sees (a browser on a white page).
    seen: Image.Image
    lossy: bool = False


def _palette(product) -> Case:
    data, reference = v.palette_png_with_trns(render_cutout(product))
    return Case(data, v.flatten(reference))


def _grey_cutout(product) -> Case:
    cutout = render_cutout(product)
    grey = Image.merge("LA", (v.with_under(cutout, v.BLACK).convert("L"), cutout.getchannel("A")))
    return Case(v.grey_cutout_png(cutout), v.flatten(grey.convert("RGBA")))


def _grey16_trns(product) -> Case:
    cutout = render_cutout(product)
    samples = v.grey16(render_product(product))  # multiples of 257: never the odd value 1
    samples[np.asarray(cutout.getchannel("A")) == 0] = 1
    grey = Image.merge("LA", (render_product(product).convert("L"), cutout.getchannel("A")))
    return Case(v.grey16_png(samples, transparent=1), v.flatten(grey.convert("RGBA")))


def _cmyk_profile(product) -> Case:
    data = v.cmyk_jpeg(render_product(product), icc_profile=v.cmyk_profile())
    cmyk = Image.open(io.BytesIO(data))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(v.cmyk_profile()))
    seen = ImageCms.profileToProfile(
        cmyk, profile, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
    )
    return Case(data, seen.convert("RGB"))  # type: ignore[union-attr]


#: name -> product -> Case. Pixels stored differently, one picture seen.
SHOP_FILES: dict[str, Callable[..., Case]] = {
    "cutout-png-black-under": lambda p: Case(
        v.cutout_png(render_cutout(p), v.BLACK), v.flatten(render_cutout(p))
    ),
    "cutout-png-white-under": lambda p: Case(
        v.cutout_png(render_cutout(p), v.WHITE), v.flatten(render_cutout(p))
    ),
    "cutout-png-soft-edges": lambda p: Case(v.png(soft_cutout(p)), v.flatten(soft_cutout(p))),
    "cutout-webp-lossless": lambda p: Case(
        _webp_lossless(v.with_under(render_cutout(p), v.BLACK)), v.flatten(render_cutout(p))
    ),
    "palette-png-trns": _palette,
    "la-png-cutout": _grey_cutout,
    "grey16-png": lambda p: Case(
        v.grey16_png(v.grey16(render_product(p))), render_product(p).convert("L").convert("RGB")
    ),
    "grey16-png-trns": _grey16_trns,
    "rgb16-png": lambda p: Case(
        v.rgb16_png(np.asarray(render_product(p), np.uint16) * 257), render_product(p)
    ),
    "display-p3-png": lambda p: Case(v.display_p3_png(render_product(p)), render_product(p)),
    "cmyk-jpeg-adobe": lambda p: Case(v.cmyk_jpeg(render_product(p)), render_product(p), lossy=True),
    "cmyk-jpeg-no-adobe-marker": lambda p: Case(
        v.cmyk_jpeg(render_product(p), adobe_marker=False), render_product(p), lossy=True
    ),
    "cmyk-jpeg-with-profile": _cmyk_profile,
    "exif-3-jpeg": lambda p: Case(v.exif_rotated_jpeg(render_product(p), 3), render_product(p), lossy=True),
    "exif-6-jpeg": lambda p: Case(v.exif_rotated_jpeg(render_product(p), 6), render_product(p), lossy=True),
    "exif-8-jpeg": lambda p: Case(v.exif_rotated_jpeg(render_product(p), 8), render_product(p), lossy=True),
}


def _webp_lossless(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, exact=True)
    return out.getvalue()


def assert_shows(decoded: Image.Image, case: Case) -> None:
    assert (decoded.mode, decoded.size) == ("RGB", case.seen.size)
    error = np.abs(np.asarray(decoded, np.int16) - np.asarray(case.seen.convert("RGB"), np.int16))
    if case.lossy:
        assert (error.mean(), error.max()) <= (JPEG_MEAN, JPEG_MAX) and error.max() <= JPEG_MAX, (
            f"mean {error.mean():.2f}, max {error.max()}"
        )
    else:
        assert error.max() <= 1, f"max error {error.max()} at {np.argwhere(error > 1)[:3].tolist()}"


@pytest.mark.parametrize("product", PRODUCTS, ids=lambda p: p.id)
@pytest.mark.parametrize("name", sorted(SHOP_FILES))
def test_a_shop_file_decodes_to_the_picture_a_person_sees(name: str, product) -> None:
    case = SHOP_FILES[name](product)
    assert_shows(decode_image(case.data, LIMITS), case)


def test_the_cutouts_really_hide_black_or_white_under_transparency() -> None:
    for under in (v.BLACK, v.WHITE):
        stored = np.asarray(Image.open(io.BytesIO(v.cutout_png(render_cutout(PRODUCTS[0]), under))))
        transparent = stored[..., 3] == 0
        assert 0.3 < transparent.mean() < 0.95
        assert (stored[transparent][:, :3] == under).all()


# -- every Pillow mode, in memory -------------------------------------------------------------

RNG = np.random.default_rng(3)
COLOR = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (12, 16), dtype=np.uint8)
ALPHA = np.tile(np.linspace(0, 255, 16).round().astype(np.uint8), (12, 1))  # 0 .. 255 across
SAMPLES = RNG.integers(0, 65536, (12, 16)).astype(np.uint16)
SAMPLES[0, :3] = (0, 65535, 257)  # the extremes and an exact level


def over(color: np.ndarray, alpha: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    color = np.broadcast_to(color[..., None] if color.ndim == 2 else color, (*alpha.shape, 3))
    a = alpha[..., None] / 255
    return np.round(color * a + np.asarray(background) * (1 - a)).astype(np.uint8)


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


#: 256 palette entries (192 from COLOR, then black), and one alpha per entry for tRNS tables.
_PALETTE = np.concatenate([COLOR.reshape(-1, 3), np.zeros((64, 3), np.uint8)])
_ENTRY_ALPHA = bytes(int(a) for a in np.linspace(0, 255, 256).round())


def _palette_image(transparency: bytes | int | None) -> Image.Image:
    """GREY as palette indices into _PALETTE; tRNS as one transparent index or an alpha table."""
    image = Image.frombytes("P", (16, 12), GREY.tobytes())
    image.putpalette(_PALETTE.reshape(-1).tolist())
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _frombytes(mode: str, samples: np.ndarray) -> Image.Image:
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, (16, 12), samples.astype(dtype).tobytes())


def _with_info(image: Image.Image, **info) -> Image.Image:
    image.info.update(info)
    return image


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    ink = RNG.integers(0, 256, (12, 16, 4), dtype=np.uint8)
    c, m, y, k = (ink[..., i].astype(np.float64) for i in range(4))
    rgb = np.stack([(255 - k) * (1 - x / 255) for x in (c, m, y)], -1)
    return Image.frombytes("CMYK", (16, 12), ink.tobytes()), np.round(rgb).astype(np.uint8)


_SCALED = np.round(SAMPLES / 65535 * 255).astype(np.uint8)
_CMYK_IMAGE, _CMYK_SEEN = _cmyk()
_BITS = GREY > 127

#: mode -> (image, what a person sees on white, tolerance in levels).
MODES: dict[str, tuple[Image.Image, np.ndarray, int]] = {
    "1": (Image.fromarray(_BITS), grey_rgb(np.where(_BITS, 255, 0).astype(np.uint8)), 0),
    "L": (Image.fromarray(GREY, "L"), grey_rgb(GREY), 0),
    "L-trns": (
        _with_info(Image.fromarray(GREY, "L"), transparency=int(GREY[0, 0])),
        np.where((GREY == GREY[0, 0])[..., None], 255, grey_rgb(GREY)).astype(np.uint8),
        0,
    ),
    "P": (_palette_image(None), _PALETTE[GREY], 0),
    "P-trns-index": (
        _palette_image(int(GREY[0, 0])),
        np.where((GREY == GREY[0, 0])[..., None], 255, _PALETTE[GREY]).astype(np.uint8),
        0,
    ),
    "P-trns-alpha-table": (
        _palette_image(_ENTRY_ALPHA),
        over(_PALETTE[GREY], np.frombuffer(_ENTRY_ALPHA, np.uint8)[GREY]),
        1,
    ),
    "PA": (
        Image.merge("PA", (_palette_image(None), Image.fromarray(ALPHA, "L"))),
        over(_PALETTE[GREY], ALPHA),
        1,
    ),
    "LA": (Image.fromarray(np.dstack([GREY, ALPHA]), "LA"), over(GREY, ALPHA), 1),
    # Premultiplied: storing loses up to a level per channel at low alpha, composited it shows.
    "La": (Image.fromarray(np.dstack([GREY, ALPHA]), "LA").convert("La"), over(GREY, ALPHA), 2),
    "RGB": (Image.fromarray(COLOR), COLOR, 0),
    "RGB-trns": (
        _with_info(Image.fromarray(COLOR), transparency=tuple(int(c) for c in COLOR[0, 0])),
        np.where((COLOR == COLOR[0, 0]).all(-1)[..., None], 255, COLOR).astype(np.uint8),
        0,
    ),
    "RGBA": (Image.fromarray(np.dstack([COLOR, ALPHA])), over(COLOR, ALPHA), 1),
    "RGBa": (Image.fromarray(np.dstack([COLOR, ALPHA])).convert("RGBa"), over(COLOR, ALPHA), 2),
    "RGBX": (Image.fromarray(COLOR).convert("RGBX"), COLOR, 0),
    "CMYK": (_CMYK_IMAGE, _CMYK_SEEN, 1),
    "YCbCr": (Image.fromarray(COLOR).convert("YCbCr"), COLOR, 3),
    "I;16": (_frombytes("I;16", SAMPLES), grey_rgb(_SCALED), 0),
    "I;16B": (_frombytes("I;16B", SAMPLES), grey_rgb(_SCALED), 0),
    "I;16L": (_frombytes("I;16L", SAMPLES), grey_rgb(_SCALED), 0),
    "I;16N": (_frombytes("I;16N", SAMPLES), grey_rgb(_SCALED), 0),
    "I": (Image.fromarray(SAMPLES.astype(np.int32)), grey_rgb(_SCALED), 0),  # 16-bit PNG in older Pillow
    "I-trns": (
        _with_info(Image.fromarray(SAMPLES.astype(np.int32)), transparency=int(SAMPLES[0, 1])),
        np.where((SAMPLES == SAMPLES[0, 1])[..., None], 255, grey_rgb(_SCALED)).astype(np.uint8),
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_pillow_mode_is_converted_by_value(name: str) -> None:
    image, seen, tolerance = MODES[name]
    assert image.mode == name.split("-")[0]
    shown = to_rgb(image)
    assert shown.mode == "RGB"
    error = np.abs(np.asarray(shown, np.int16) - seen.astype(np.int16))
    assert error.max() <= tolerance, f"max error {error.max()}"


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)[None, :]
    shown = np.asarray(decode_image(v.grey16_png(ramp), LIMITS))[0, :, 0]
    assert shown.tolist() == list(range(256))


def test_modes_no_allowed_format_produces_are_refused() -> None:
    for image in (Image.new("F", (4, 4)), Image.new("LAB", (4, 4)), Image.new("HSV", (4, 4))):
        with pytest.raises(ValueError, match=f"pixel mode {image.mode} is not supported"):
            to_rgb(image)


# -- background -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rgb"),
    [
        ("white", (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("#1a2B3c", (26, 43, 60)),
        (" White ", (255, 255, 255)),
    ],
)
def test_background_parses(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_background(text) == rgb


@pytest.mark.parametrize("text", ["", "red", "#fff", "#12345g", "ffffff", "#1234567"])
def test_a_bad_background_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="white, black or #rrggbb"):
        parse_background(text)


@pytest.mark.parametrize("background", [(0, 0, 0), (26, 43, 60)])
def test_transparency_is_composited_onto_the_configured_background(background) -> None:
    cutout = soft_cutout(PRODUCTS[0])
    decoded = decode_image(v.png(cutout), ImageLimits(background=background))
    seen = np.asarray(v.flatten(cutout, background), np.int16)
    assert np.abs(np.asarray(decoded, np.int16) - seen).max() <= 1


def test_the_preprocessing_string_names_the_rules_and_the_background() -> None:
    assert preprocessing_policy((255, 255, 255)) == f"{PREPROCESSING_VERSION}; background #ffffff"
    assert preprocessing_policy((26, 43, 60)).endswith("; background #1a2b3c")


# -- files whose pixels must not change, profiles that must not fail ----------------------------


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    "save",
    [
        {"format": "JPEG", "quality": 90},
        {"format": "PNG"},
        {"format": "WEBP", "quality": 80},
        {"format": "JPEG", "quality": 90, "icc_profile": "srgb"},
        {"format": "PNG", "icc_profile": "srgb"},
    ],
    ids=["jpeg", "png", "webp", "jpeg-srgb-profile", "png-srgb-profile"],
)
def test_plain_rgb_files_keep_exactly_the_pixels_of_plain_conversion(save: dict) -> None:
    """What keeps the fingerprint unchanged (see encoder_service/fingerprint.py)."""
    save = dict(save)
    if save.get("icc_profile") == "srgb":
        save["icc_profile"] = _srgb_profile()
    out = io.BytesIO()
    render_product(PRODUCTS[1]).save(out, **save)
    with Image.open(io.BytesIO(out.getvalue())) as opened:
        plain = np.asarray(opened.convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(out.getvalue(), LIMITS)), plain)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("garbage-profile-png", lambda rgb: v.png(rgb, icc_profile=b"not a profile" * 10)),
        ("truncated-profile-png", lambda rgb: v.png(rgb, icc_profile=v.display_p3_profile()[:200])),
        ("cmyk-profile-on-rgb-png", lambda rgb: v.png(rgb, icc_profile=v.cmyk_profile())),
        ("rgb-profile-on-cmyk-jpeg", lambda rgb: v.cmyk_jpeg(rgb, icc_profile=v.display_p3_profile())),
    ],
)
def test_an_unusable_profile_falls_back_to_plain_conversion(name: str, data) -> None:
    rgb = render_product(PRODUCTS[0])
    encoded = data(rgb)
    with Image.open(io.BytesIO(encoded)) as opened:
        assert opened.info.get("icc_profile")
        plain = np.asarray(opened.convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(encoded, LIMITS)), plain)


@pytest.mark.parametrize("transparent", [False, True])
def test_a_palette_file_with_a_profile_shows_like_the_rgb_file_of_its_colours(transparent: bool) -> None:
    p3 = v.to_display_p3(render_product(PRODUCTS[0])).quantize(colors=200, dither=Image.Dither.NONE)
    options = {"icc_profile": v.display_p3_profile()}
    if transparent:
        options["transparency"] = 255  # an index the image does not use: all opaque, tRNS present
    as_palette = decode_image(v.png(p3, **options), LIMITS)
    as_rgb = decode_image(v.png(p3.convert("RGB"), icc_profile=v.display_p3_profile()), LIMITS)
    assert np.array_equal(np.asarray(as_palette), np.asarray(as_rgb))
    assert not np.array_equal(np.asarray(as_rgb), np.asarray(p3.convert("RGB")))  # the profile was applied


@pytest.mark.parametrize("alpha", [False, True], ids=["L", "LA"])
def test_a_grey_file_with_a_grey_profile_is_converted_to_srgb(alpha: bool) -> None:
    grey = render_product(PRODUCTS[1]).convert("L")
    profile = v.grey_gamma_profile(1.8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    seen = ImageCms.profileToProfile(
        grey, ImageCms.ImageCmsProfile(io.BytesIO(profile)), srgb, outputMode="RGB"
    )
    image = Image.merge("LA", (grey, Image.new("L", grey.size, 255))) if alpha else grey
    decoded = decode_image(v.png(image, icc_profile=profile), LIMITS)
    assert np.array_equal(np.asarray(decoded), np.asarray(seen))
    # Gamma 1.8 shows mid greys lighter than sRGB would: the profile was applied.
    assert np.asarray(decoded, np.int16).mean() > np.asarray(grey, np.int16).mean() + 5


def test_without_little_cms_profiles_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "ImageCms", None)
    rgb = render_product(PRODUCTS[0])
    decoded = decode_image(v.display_p3_png(rgb), LIMITS)
    assert np.array_equal(np.asarray(decoded), np.asarray(v.to_display_p3(rgb)))


def test_profile_transforms_are_cached_and_bounded() -> None:
    cache = images._TransformCache(size=2)
    p3 = v.display_p3_profile()
    assert cache.get(p3, "RGB") is cache.get(p3, "RGB") is not None
    assert cache.get(_srgb_profile(), "RGB") is None  # sRGB: nothing to do
    cache.get(v.cmyk_profile(), "CMYK")
    assert len(cache._entries) == 2


# -- through the trained demo model -----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_model():
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"{DEMO_CHECKPOINT} is missing")
    from encoder_service.model import load_model

    return load_model(DEMO_MODEL, str(DEMO_CHECKPOINT))


def embed(model, pictures: list[Image.Image]) -> np.ndarray:
    return model.encode_images([model.preprocess_image(picture) for picture in pictures])


@pytest.mark.parametrize("product", PRODUCTS, ids=lambda p: p.id)
def test_the_model_sees_each_shop_file_as_the_picture(demo_model, product) -> None:
    names = sorted(SHOP_FILES)
    cases = [SHOP_FILES[name](product) for name in names]
    files = embed(demo_model, [decode_image(case.data, LIMITS) for case in cases])
    pictures = embed(demo_model, [case.seen.convert("RGB") for case in cases])
    cosines = dict(zip(names, (files * pictures).sum(axis=1).round(4).tolist(), strict=True))
    assert min(cosines.values()) >= MIN_COSINE, cosines


def test_the_cosine_bound_tells_a_cutout_on_black_from_one_on_white(demo_model) -> None:
    """What the v1 decoder did (transparent pixels shown as the black stored under them) is
    far outside the bound: the bound has teeth."""
    cutout = render_cutout(PRODUCTS[0])
    on_white, on_black = embed(demo_model, [v.flatten(cutout, v.WHITE), v.flatten(cutout, v.BLACK)])
    assert float(on_white @ on_black) < 0.9  # measured 0.29
