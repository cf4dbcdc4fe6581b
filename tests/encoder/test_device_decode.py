"""The core with the device decoder (run on the CPU): same vectors, same refusals, fallbacks,
and how --image-decode, --max-batch-size 0 and --decode-workers 0 resolve."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
import torch
from encoder_media import hostile_images, image_bytes
from image_variants import cmyk_jpeg, exif_rotated_jpeg, jpeg
from test_device_images import TORCHVISION_DEPRECATION, photo

from clipsearch.errors import InvalidArgumentError
from encoder_service.core import EncoderCore, ImageInput, TextInput, warm_up_jpeg
from encoder_service.device_images import DeviceImages, plan_jpeg
from encoder_service.factory import (
    check_device_images,
    core_from_settings,
    device_defaults,
    resolve_image_decode,
)
from encoder_service.images import ImageLimits
from encoder_service.model import ModelLoadError
from encoder_service.settings import EncoderSettings

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings(TORCHVISION_DEPRECATION)]
#: Refused on the event loop (size, magic bytes) before any decoder sees them.
REFUSED_BEFORE_DECODING = {"zero-bytes", "huge-payload", "eps", "gif", "bmp", "tiff", "random-bytes"}
HOSTILE = {
    name: data
    for name, data in hostile_images(ImageLimits().max_bytes).items()
    if name not in REFUSED_BEFORE_DECODING
}

TINY = {"model": "clipsearch-tiny", "pretrained": "random", "threads": 1, "decode_workers": 2}


def run(coroutine):
    return asyncio.run(coroutine)


async def started(image_decode: str, *, warm_up: bool = True, **settings) -> EncoderCore:
    core = core_from_settings(EncoderSettings(**{**TINY, **settings}, image_decode=image_decode))
    await core.start(warm_up=warm_up)
    return core


def inputs() -> list:
    return [
        ImageInput(jpeg(photo(256, 256), 90)),
        TextInput("a red dress"),
        ImageInput(jpeg(photo(300, 200, seed=1), 85, progressive=True)),
        ImageInput(image_bytes("PNG", size=(60, 40))),  # CPU path
        ImageInput(cmyk_jpeg(photo(64, 64))),  # CPU path
        ImageInput(exif_rotated_jpeg(photo(240, 160), 6)),
        ImageInput(jpeg(photo(200, 256).convert("L"), 90)),
    ]


def test_the_device_path_gives_the_cpu_paths_vectors() -> None:
    async def both() -> tuple[np.ndarray, np.ndarray, EncoderCore]:
        cpu, device = await started("cpu"), await started("device")
        try:
            return await cpu.embed(inputs()), await device.embed(inputs()), device
        finally:
            cpu.close()
            device.close()

    on_cpu, on_device, core = run(both())
    assert core.image_decode == "device"
    cosines = (on_cpu * on_device).sum(1)
    assert cosines.min() >= 0.9999, cosines
    assert core.metrics.snapshot().decode_paths == {"device": 4, "cpu": 2}


def test_many_callers_share_decode_batches_and_get_their_own_vectors() -> None:
    images = [jpeg(photo(128, 128, seed=seed), 90) for seed in range(24)]

    async def go() -> tuple[list[np.ndarray], np.ndarray, EncoderCore]:
        core = await started("device", max_wait_ms=20)
        try:
            alone = await core.embed([ImageInput(d) for d in images])
            together = await asyncio.gather(*(core.embed([ImageInput(d)]) for d in images))
            return together, alone, core
        finally:
            core.close()

    together, alone, _ = run(go())
    np.testing.assert_allclose(np.concatenate(together), alone, atol=1e-5)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_images_are_refused_naming_them(name: str) -> None:
    data = HOSTILE[name]

    async def go() -> None:
        core = await started("device", warm_up=False)
        try:
            with pytest.raises(InvalidArgumentError) as caught:
                await core.embed([TextInput("fine"), ImageInput(data)])
            assert caught.value.field == "inputs[1].image"
        finally:
            core.close()

    run(go())


def test_a_jpeg_the_device_fails_on_is_decided_by_the_cpu_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    good, corrupt = jpeg(photo(64, 64), 90), bytearray(jpeg(photo(64, 64), 90))
    sof = corrupt.find(b"\xff\xc0")
    corrupt[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero width and height: Pillow refuses it

    async def go() -> EncoderCore:
        core = await started("device")
        try:
            assert core.device_images is not None
            monkeypatch.setattr(
                core.device_images, "decode", lambda jpegs: [RuntimeError("nvjpeg says no")] * len(jpegs)
            )
            vectors = await core.embed([ImageInput(good), ImageInput(good)])
            assert vectors.shape == (2, 64)
            outcomes = await core.embed_each([ImageInput(good), ImageInput(bytes(corrupt))])
            assert isinstance(outcomes[0], np.ndarray)
            assert isinstance(outcomes[1], InvalidArgumentError)
            return core
        finally:
            core.close()

    core = run(go())
    assert core.metrics.snapshot().decode_paths["fallback"] == 3


def test_a_device_batch_that_raises_falls_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> np.ndarray:
        core = await started("device")
        try:
            assert core.device_images is not None

            def explode(jpegs):
                raise RuntimeError("CUDA error: an illegal memory access")

            monkeypatch.setattr(core.device_images, "decode", explode)
            return await core.embed([ImageInput(jpeg(photo(64, 64), 90))])
        finally:
            core.close()

    assert run(go()).shape == (1, 64)


# -- resolving the settings --------------------------------------------------------------------


def test_device_defaults() -> None:
    assert device_defaults(torch.device("cpu"), cores=2) == device_defaults(torch.device("cpu"), cores=2)
    cpu, cuda = (
        device_defaults(torch.device("cpu"), cores=16),
        device_defaults(torch.device("cuda"), cores=16),
    )
    assert (cpu.max_batch_size, cpu.decode_workers) == (32, 4)
    assert (cuda.max_batch_size, cuda.decode_workers) == (256, 16)
    assert device_defaults(torch.device("cpu"), cores=2).decode_workers == 2


def test_zero_means_the_devices_default_and_a_number_wins() -> None:
    core = core_from_settings(EncoderSettings(**{**TINY, "decode_workers": 0}))
    try:
        assert core.batcher.policy.max_batch_size == 32
        assert core._pool._max_workers == device_defaults(torch.device("cpu")).decode_workers
    finally:
        core.close()
    core = core_from_settings(EncoderSettings(**TINY, max_batch_size=7))
    try:
        assert core.batcher.policy.max_batch_size == 7 and core._pool._max_workers == 2
    finally:
        core.close()


def test_auto_decodes_on_the_cpu_without_cuda(reference_model) -> None:
    assert resolve_image_decode("auto", reference_model, ImageLimits()) is None
    assert resolve_image_decode("cpu", reference_model, ImageLimits()) is None
    assert isinstance(resolve_image_decode("device", reference_model, ImageLimits()), DeviceImages)


def test_the_start_up_check_catches_a_decoder_that_is_off(
    reference_model, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    device_images = DeviceImages.for_model(reference_model.preprocess, torch.device("cpu"))
    assert device_images is not None
    assert check_device_images(device_images, reference_model, ImageLimits()) is None
    monkeypatch.setattr(device_images, "decode", lambda jpegs: [torch.zeros(3, 32, 32)] * len(jpegs))
    problem = check_device_images(device_images, reference_model, ImageLimits())
    assert problem is not None and "levels of 255" in problem

    monkeypatch.setattr(DeviceImages, "decode", lambda self, jpegs: [RuntimeError("no nvjpeg")] * len(jpegs))
    with pytest.raises(ModelLoadError, match="--image-decode device: RuntimeError: no nvjpeg"):
        resolve_image_decode("device", reference_model, ImageLimits())
    # As if on a GPU without a usable decoder: auto warns and decodes on the CPU.
    monkeypatch.setattr(reference_model, "device", torch.device("cuda"))
    on_cpu = DeviceImages(device_images.transform, torch.device("cpu"))
    monkeypatch.setattr(DeviceImages, "for_model", classmethod(lambda cls, preprocess, device: on_cpu))
    with caplog.at_level(logging.WARNING):
        assert resolve_image_decode("auto", reference_model, ImageLimits()) is None
    assert "decoding on the CPU" in caplog.text


def test_the_warm_up_jpeg_takes_the_device_path() -> None:
    assert plan_jpeg(warm_up_jpeg(), ImageLimits()) is not None
