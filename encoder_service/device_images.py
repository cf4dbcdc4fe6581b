"""JPEGs decoded, resized and normalized on the model's device, in batches.

The safe CPU decoder (:mod:`encoder_service.images`) still decides what is accepted:
:func:`plan_jpeg` reads the header with the same restricted Pillow (limits, allow-list, EXIF)
and lets only plain JPEGs through, those whose picture is the decoded samples as they are:

- baseline or progressive Huffman JPEG (SOF0, SOF1, SOF2), 8-bit, grey or YCbCr colour,
  complete (ends with the EOI marker), not MPO;
- no Adobe marker (CMYK/YCCK and Adobe RGB transforms) and no RGB component ids;
- no ICC profile that changes colours (sRGB-tagged files keep their exact pixels on the CPU
  path too, see ``images.py``);
- any EXIF orientation (applied here on the decoded tensor, as ``exif_transpose`` does).

Everything else (PNG, WebP, CMYK, wide-gamut JPEGs, truncated or odd files) returns None and
takes the CPU path, which refuses or decodes it exactly as before. So does a JPEG the device
decoder fails on.

On CUDA :class:`DeviceImages` decodes with nvJPEG (``torchvision.io.decode_jpeg(...,
device="cuda")``: the hardware decoder for baseline JPEGs where the GPU has one), on the CPU
with torchvision's libjpeg-turbo, which gives Pillow's pixels exactly (used by the tests and
the CPU rehearsal). :class:`TensorTransform` then does the model's evaluation transform on
tensors, grouped by size: Pillow's two-pass resample (horizontal then vertical, rounded to
8 bits in between and after, rounding halves up, bicubic with a = -0.5 and antialiasing), centre
crop and normalization: on the same decoded pixels, within 2 levels of 255 of Pillow's model
input at any value and 1 level at nearly all, mean under 0.01 level
(tests/encoder/test_device_images.py).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import ExifTags, Image
from torch.nn import functional as F

from encoder_service.images import ImageLimits, _profile_transform

log = logging.getLogger(__name__)

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec (a warning per call); they
# still work, and if they are ever removed the start-up check fails and `auto` decodes on the CPU.
warnings.filterwarnings(
    "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
)

#: Start-of-frame markers the device path takes: baseline, extended sequential, progressive
#: (Huffman coding, 8-bit). Lossless, hierarchical and arithmetic-coded JPEGs go to the CPU.
DEVICE_SOF = frozenset({0xC0, 0xC1, 0xC2})
_ALL_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))


@dataclass(frozen=True)
class DeviceJpeg:
    """A JPEG the CPU decoder vetted, to be decoded on the device."""

    data: bytes
    #: EXIF orientation, 1 to 8 (1: as stored).
    orientation: int
    #: Names the input in errors (``inputs[3].image``).
    field: str


def plan_jpeg(data: bytes, limits: ImageLimits, *, field: str = "image") -> DeviceJpeg | None:
    """A :class:`DeviceJpeg` if the device path gives the CPU decoder's picture; else None (CPU path)."""
    if data[:3] != b"\xff\xd8\xff" or not data.endswith(b"\xff\xd9"):
        return None
    if _sof_marker(data) not in DEVICE_SOF:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as opened:
            width, height = opened.size
            if opened.format != "JPEG" or width * height > limits.pixel_limit:
                return None
            if opened.mode not in ("L", "RGB") or "adobe" in opened.info:
                return None
            layer = getattr(opened, "layer", None)
            if opened.mode == "RGB" and (
                not layer or tuple(component[0] for component in layer) == _RGB_COMPONENT_IDS
            ):
                return None
            profile = opened.info.get("icc_profile")
            if profile and _profile_transform(profile, opened.mode) is not None:
                return None
            orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # whatever the header parse refuses, the CPU path refuses with its message
        return None
    return DeviceJpeg(data, orientation if orientation in range(1, 9) else 1, field)


def _sof_marker(data: bytes) -> int | None:
    """The start-of-frame marker code (0xC0...) of a JPEG, from its segment headers; None if absent."""
    position, end = 2, len(data) - 4
    while position <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers
            position += 2
            continue
        if marker in _ALL_SOF:
            return marker
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) turned as ``PIL.ImageOps.exif_transpose`` turns an image with this EXIF orientation."""
    if orientation == 2:  # FLIP_LEFT_RIGHT
        return image.flip(-1)
    if orientation == 3:  # ROTATE_180
        return image.flip(-2, -1)
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return image.flip(-2)
    if orientation == 5:  # TRANSPOSE
        return image.transpose(-2, -1)
    if orientation == 6:  # ROTATE_270
        return image.rot90(-1, (-2, -1))
    if orientation == 7:  # TRANSVERSE
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # ROTATE_90
        return image.rot90(1, (-2, -1))
    return image


@dataclass(frozen=True)
class TensorTransform:
    """open_clip's evaluation transform (Resize [+ CenterCrop] + ToTensor + Normalize) on tensors."""

    #: int: the shorter side becomes this (aspect kept); (h, w): exactly this size.
    resize: int | tuple[int, int]
    mode: str  # "bicubic" | "bilinear"
    crop: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_compose(cls, preprocess: Any) -> TensorTransform | None:
        """The same transform on tensors, or None when it has a step not reproduced here."""
        from torchvision import transforms as T

        steps = list(getattr(preprocess, "transforms", None) or [])
        resize = crop = normalize = None
        for step in steps:
            name = getattr(step, "__name__", type(step).__name__)  # a function's name, else its class's
            if isinstance(step, T.Resize) and resize is None and crop is None:
                resize = step
            elif isinstance(step, T.CenterCrop) and resize is not None and crop is None:
                crop = step
            elif isinstance(step, T.Normalize) and normalize is None:
                normalize = step
            elif name in ("MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"):
                continue  # the decoded tensor is RGB already; the division by 255 is in _batch
            else:
                return None
        if resize is None or normalize is None or resize.max_size is not None or not resize.antialias:
            return None
        modes = {T.InterpolationMode.BICUBIC: "bicubic", T.InterpolationMode.BILINEAR: "bilinear"}
        if resize.interpolation not in modes:
            return None
        size = resize.size
        if isinstance(size, int):
            target: int | tuple[int, int] = size
        elif len(size) == 1:
            target = int(size[0])
        else:
            target = (int(size[0]), int(size[1]))
        crop_size = tuple(int(s) for s in crop.size) if crop is not None else None
        return cls(
            resize=target,
            mode=modes[resize.interpolation],
            crop=crop_size,  # type: ignore[arg-type]
            mean=tuple(float(m) for m in normalize.mean),
            std=tuple(float(s) for s in normalize.std),
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) after the resize, as torchvision computes it for a PIL image."""
        if isinstance(self.resize, tuple):
            return self.resize
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def __call__(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (3, H, W) images (any sizes, one device) -> float32 (3, h, w) model inputs, in order."""
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for position, image in enumerate(images):
            groups.setdefault((image.shape[-2], image.shape[-1]), []).append(position)
        for (height, width), positions in groups.items():
            batch = (
                torch.stack([images[p] for p in positions])
                if len(positions) > 1
                else images[positions[0]][None]
            )
            pixels = self._batch(batch, height, width)
            for position, row in zip(positions, pixels.unbind(0), strict=True):
                out[position] = row
        return out  # type: ignore[return-value]

    def _batch(self, batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        new_h, new_w = self.output_size(height, width)
        x = batch.float()
        # Pillow resamples horizontally, rounds to 8 bits (halves up), then vertically; doing the
        # same keeps its clipping of bicubic overshoot: within a level of its picture, not 5.
        if new_w != width:
            x = F.interpolate(x, size=(height, new_w), mode=self.mode, antialias=True, align_corners=False)
            x = x.add_(0.5).floor_().clamp_(0, 255)
        if new_h != height:
            x = F.interpolate(x, size=(new_h, new_w), mode=self.mode, antialias=True, align_corners=False)
            x = x.add_(0.5).floor_().clamp_(0, 255)
        if self.crop is not None:
            x = _center_crop(x, self.crop)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.div_(255).sub_(mean).div_(std)


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's center_crop (zero padding when the image is smaller), on a batch."""
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(x, list(size))


class DeviceImages:
    """Vetted JPEGs -> model inputs on ``device``: decode in one batch, orient, transform."""

    def __init__(self, transform: TensorTransform, device: torch.device):
        self.transform = transform
        self.device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    @classmethod
    def for_model(cls, preprocess: Any, device: torch.device) -> DeviceImages | None:
        transform = TensorTransform.from_compose(preprocess)
        if transform is None:
            log.warning("the model's image transform has a step the device path does not reproduce")
            return None
        return cls(transform, device)

    def decode(self, jpegs: Sequence[DeviceJpeg]) -> list[torch.Tensor | Exception]:
        """One model input per JPEG, or the exception its decode raised (the caller falls back)."""
        if not jpegs:
            return []
        if self._stream is None:
            return self._decode(jpegs)
        with torch.cuda.stream(self._stream):
            out = self._decode(jpegs)
        # Ready before they leave this thread: the model thread uses them on its own stream.
        self._stream.synchronize()
        return out

    def _decode(self, jpegs: Sequence[DeviceJpeg]) -> list[torch.Tensor | Exception]:
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
        decoded: list[torch.Tensor | Exception]
        try:
            decoded = list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device))
        except Exception:  # one bad file fails the batch: find it, the others still go
            decoded = []
            for data in encoded:
                try:
                    decoded.append(decode_jpeg([data], mode=ImageReadMode.RGB, device=self.device)[0])
                except Exception as exc:
                    decoded.append(exc)
        good = [p for p, image in enumerate(decoded) if isinstance(image, torch.Tensor)]
        upright = [orient(decoded[p], jpegs[p].orientation) for p in good]  # type: ignore[arg-type]
        out: list[torch.Tensor | Exception] = list(decoded)
        for position, pixels in zip(good, self.transform(upright), strict=True):
            out[position] = pixels
        return out
