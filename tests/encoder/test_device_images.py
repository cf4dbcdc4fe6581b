"""The device image path, run on the CPU: the same acceptance and the same picture as the CPU path.

torchvision's CPU JPEG decoder is libjpeg-turbo like Pillow's, so on the CPU the device path's
pixels differ from the CPU path's only by the tensor resize's rounding: at most 2 levels of 255
at any value, 1 level at all but a handful, and a mean under 0.01 level (tested here). On CUDA,
nvJPEG's IDCT and chroma upsampling add their own differences; the GPU check
(benchmarks/gpu_check.sh) measures those on the device.
"""

from __future__ import annotations

import io

import numpy as np
import open_clip
import pytest
import torch
from encoder_media import hostile_images, image_bytes
from image_variants import _STORED, cmyk_jpeg, display_p3_profile, exif_rotated_jpeg, jpeg, png, strip_segment
from PIL import Image, ImageCms

from encoder_service.device_images import (
    DeviceImages,
    DeviceJpeg,
    TensorTransform,
    _sof_marker,
    orient,
    plan_jpeg,
)
from encoder_service.images import ImageLimits, decode_image

TORCHVISION_DEPRECATION = (
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)
pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings(TORCHVISION_DEPRECATION)]

LIMITS = ImageLimits()
CPU = torch.device("cpu")


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Texture and colour edges (noise over gradients, a saturated block): a hard case for resizing."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = np.concatenate([x.repeat(height, 0), y.repeat(width, 1), (255 - x).repeat(height, 0)], -1)
    pixels = pixels * 0.7 + rng.normal(40, 30, (height, width, 3))
    pixels[height // 4 : height // 2, width // 3 : 2 * width // 3] = (220, 20, 40)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def transform_of(size: int = 224, **options) -> tuple[object, TensorTransform]:
    preprocess = open_clip.image_transform(size, is_train=False, **options)
    transform = TensorTransform.from_compose(preprocess)
    assert transform is not None
    return preprocess, transform


def levels(got: torch.Tensor, want: torch.Tensor, transform: TensorTransform) -> torch.Tensor:
    """|got - want| in levels of 255 (undoing the normalization's division by std)."""
    return (got - want).abs() * torch.tensor(transform.std).view(-1, 1, 1) * 255


def device_pixels(data: bytes, transform: TensorTransform) -> torch.Tensor:
    jpeg_ = plan_jpeg(data, LIMITS)
    assert jpeg_ is not None, "expected the device path"
    (out,) = DeviceImages(transform, CPU).decode([jpeg_])
    assert isinstance(out, torch.Tensor)
    return out


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def rotated_420(upright: Image.Image, orientation: int) -> bytes:
    """Like image_variants.exif_rotated_jpeg, with the usual 4:2:0 chroma subsampling."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(upright.transpose(_STORED[orientation]), 90, exif=exif)


CASES = {
    "square 256, 4:2:0": jpeg(photo(256, 256), 90),
    "landscape 300x200": jpeg(photo(300, 200), 90),
    "portrait 181x333": jpeg(photo(181, 333), 85),
    "small 97, upscaled": jpeg(photo(97, 97), 90),
    "large 1024x768": jpeg(photo(1024, 768), 80),
    "4:4:4": jpeg(photo(256, 256), 90, subsampling=0),
    "progressive": jpeg(photo(256, 200), 90, progressive=True),
    "grey": jpeg(photo(200, 256).convert("L"), 90),
    "sRGB profile": jpeg(
        photo(256, 256), 90, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ),
    **{f"EXIF orientation {o}": exif_rotated_jpeg(photo(240, 160), o) for o in range(2, 9)},
    **{f"EXIF orientation {o}, 4:2:0": rotated_420(photo(240, 160), o) for o in (6, 8)},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_device_path_gives_the_cpu_paths_model_input(name: str) -> None:
    preprocess, transform = transform_of()
    data = CASES[name]
    want = preprocess(decode_image(data, LIMITS))
    got = device_pixels(data, transform)
    assert got.shape == want.shape == (3, 224, 224) and got.dtype == torch.float32
    diff = levels(got, want, transform)
    assert diff.max() <= 2.0 + 1e-3, f"{name}: {diff.max():.3f} levels"
    assert (diff > 1.0 + 1e-3).sum() <= 3, f"{name}: {(diff > 1.001).sum()} values over one level"
    assert diff.mean() <= 0.01, f"{name}: mean {diff.mean():.4f} levels"


@pytest.mark.parametrize(
    "options",
    [
        {"interpolation": "bilinear"},
        {"resize_mode": "squash"},
        {"resize_mode": "squash", "interpolation": "bilinear"},
    ],
)
def test_other_resizes_of_open_clip_are_reproduced(options: dict) -> None:
    preprocess, transform = transform_of(64, **options)
    data = CASES["landscape 300x200"]
    diff = levels(device_pixels(data, transform), preprocess(decode_image(data, LIMITS)), transform)
    assert diff.max() <= 2.0 + 1e-3 and diff.mean() <= 0.02


def test_a_transform_with_another_step_is_not_reproduced() -> None:
    assert (
        TensorTransform.from_compose(open_clip.image_transform(64, is_train=False, resize_mode="longest"))
        is None
    )
    assert TensorTransform.from_compose(open_clip.image_transform(64, is_train=True)) is None
    assert TensorTransform.from_compose(lambda image: image) is None


def test_the_resized_size_is_torchvisions() -> None:
    _, transform = transform_of(224)
    for height, width in ((256, 256), (200, 300), (333, 181), (97, 1000), (1, 5000)):
        image = Image.new("RGB", (width, height))
        resized = open_clip.image_transform(224, is_train=False).transforms[0](image)
        assert transform.output_size(height, width) == (resized.height, resized.width)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_turns_as_exif_transpose(orientation: int) -> None:
    stored = photo(30, 20, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.open(io.BytesIO(png(stored, exif=exif)))
    from PIL import ImageOps

    upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    tensor = torch.from_numpy(np.asarray(stored).copy()).permute(2, 0, 1)
    assert np.array_equal(orient(tensor, orientation).permute(1, 2, 0).numpy(), upright)


# -- what takes the device path, and what does not ------------------------------------------


def test_plain_jpegs_take_the_device_path_with_their_orientation() -> None:
    plan = plan_jpeg(CASES["EXIF orientation 6"], LIMITS, field="inputs[2].image")
    assert plan == DeviceJpeg(CASES["EXIF orientation 6"], 6, "inputs[2].image")
    for name in ("square 256, 4:2:0", "progressive", "grey", "sRGB profile"):
        assert plan_jpeg(CASES[name], LIMITS) is not None, name


def p3_jpeg() -> bytes:
    return jpeg(photo(64, 64), 90, icc_profile=display_p3_profile())


def adobe_rgb_marker_jpeg() -> bytes:
    """A plain JPEG with an Adobe APP14 segment (transform 1) inserted after SOI."""
    data = jpeg(photo(64, 64), 90)
    segment = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01"
    return data[:2] + segment + data[2:]


def rgb_ids_jpeg() -> bytes:
    """A JPEG whose three components are named R, G, B (libjpeg reads them without YCbCr)."""
    data = bytearray(strip_segment(jpeg(photo(64, 64), 90), 0xFFE0, b"JFIF"))
    sof = data.find(b"\xff\xc0")
    for i, name in enumerate(b"RGB"):
        data[sof + 10 + 3 * i] = name
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("png", image_bytes("PNG")),
        ("webp", image_bytes("WEBP")),
        ("cmyk (Adobe)", cmyk_jpeg(photo(64, 64))),
        ("cmyk without the marker", cmyk_jpeg(photo(64, 64), adobe_marker=False)),
        ("Adobe marker on RGB", adobe_rgb_marker_jpeg()),
        ("component ids R, G, B", rgb_ids_jpeg()),
        ("Display P3 profile", p3_jpeg()),
        ("bytes after the end marker", jpeg(photo(64, 64), 90) + b"trailing"),
        ("truncated", jpeg(photo(128, 128), 90)[:3000]),
        ("over the pixel limit", jpeg(photo(300, 300), 90)),
    ],
)
def test_everything_else_takes_the_cpu_path(name: str, data: bytes) -> None:
    limits = ImageLimits(max_pixels=300 * 299) if name == "over the pixel limit" else LIMITS
    assert plan_jpeg(data, limits) is None


@pytest.mark.parametrize("name", sorted(hostile_images(LIMITS.max_bytes)))
def test_no_hostile_image_takes_the_device_path(name: str) -> None:
    assert plan_jpeg(hostile_images(LIMITS.max_bytes)[name], LIMITS) is None


def test_only_huffman_frames_of_8_bits_are_planned() -> None:
    data = bytearray(jpeg(photo(32, 32), 90))
    assert _sof_marker(bytes(data)) == 0xC0
    sof = data.find(b"\xff\xc0")
    for marker in (0xC3, 0xC5, 0xC9, 0xCA):  # lossless, hierarchical, arithmetic
        data[sof + 1] = marker
        assert _sof_marker(bytes(data)) == marker
        assert plan_jpeg(bytes(data), LIMITS) is None
    assert _sof_marker(b"\xff\xd8\xff\xda\x00\x02") is None


# -- the decoder: batches, failures ----------------------------------------------------------


def test_a_batch_of_mixed_sizes_comes_back_in_order() -> None:
    preprocess, transform = transform_of(64)
    datas = [CASES[n] for n in ("landscape 300x200", "square 256, 4:2:0", "grey", "landscape 300x200")]
    out = DeviceImages(transform, CPU).decode([plan_jpeg(d, LIMITS) for d in datas])  # type: ignore[misc]
    for data, got in zip(datas, out, strict=True):
        assert isinstance(got, torch.Tensor)
        assert levels(got, preprocess(decode_image(data, LIMITS)), transform).max() <= 2.0 + 1e-3


def test_a_file_the_decoder_fails_on_is_returned_as_its_error_the_others_decoded() -> None:
    _, transform = transform_of(64)
    good = plan_jpeg(CASES["grey"], LIMITS)
    assert good is not None
    bad = DeviceJpeg(b"\xff\xd8\xff\xe0" + bytes(40) + b"\xff\xd9", 1, "inputs[1].image")
    out = DeviceImages(transform, CPU).decode([good, bad, good])
    assert isinstance(out[0], torch.Tensor) and isinstance(out[2], torch.Tensor)
    assert isinstance(out[1], Exception)
