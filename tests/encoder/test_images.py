"""Safe decode of untrusted image bytes (unit tests of encoder_service.images)."""

from __future__ import annotations

import io

import pytest
from encoder_media import hostile_images, image_bytes
from PIL import Image

from clipsearch.errors import InvalidArgumentError
from encoder_service.images import ImageLimits, decode_image, sniff_format

LIMITS = ImageLimits(max_bytes=1024 * 1024)
# The bombs make Pillow warn before our check refuses them; the refusal is what is tested.
pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    image = decode_image(image_bytes(fmt, size=(48, 40)), LIMITS)
    assert image.mode == "RGB"
    assert image.size == (48, 40)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_other_pixel_modes_become_rgb(mode: str) -> None:
    buffer = io.BytesIO()
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    Image.new(mode, (20, 10)).save(buffer, fmt)
    image = decode_image(buffer.getvalue(), LIMITS)
    assert (image.mode, image.size) == ("RGB", (20, 10))


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (9, 9, 9)).save(buffer, "JPEG", exif=exif)
    assert decode_image(buffer.getvalue(), LIMITS).size == (20, 40)


@pytest.mark.parametrize("name", sorted(hostile_images(LIMITS.max_bytes)))
def test_hostile_images_are_refused_naming_the_field(name: str) -> None:
    data = hostile_images(LIMITS.max_bytes)[name]
    with pytest.raises(InvalidArgumentError) as caught:
        decode_image(data, LIMITS, field="inputs[7].image")
    assert caught.value.field == "inputs[7].image"
    assert str(caught.value).startswith("inputs[7].image: ")


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    small_limit = ImageLimits(max_pixels=100 * 100)
    decode_image(image_bytes("PNG", size=(100, 100)), small_limit)
    with pytest.raises(InvalidArgumentError, match="10100 pixels, over the limit of 10000"):
        decode_image(image_bytes("PNG", size=(101, 100)), small_limit)


def test_pillow_limit_stays_on_when_ours_is_higher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)
    with pytest.raises(InvalidArgumentError, match="over the limit of 2500"):
        decode_image(image_bytes("PNG", size=(60, 60)), ImageLimits(max_pixels=10**9))


def test_sniffing_knows_only_the_three_formats() -> None:
    assert sniff_format(image_bytes("JPEG")) == "JPEG"
    assert sniff_format(image_bytes("PNG")) == "PNG"
    assert sniff_format(image_bytes("WEBP")) == "WEBP"
    for fmt in ("GIF", "BMP", "TIFF", "ICO", "PPM"):
        assert sniff_format(image_bytes(fmt)) is None
