"""Settings -> a ready encoder core: the one place both the gRPC server and the Ray replica build it.

Settings left at 0 or ``auto`` are chosen here for the device the model landed on (see
:func:`device_defaults`), and ``--image-decode`` is resolved by a start-up check of the
device decoder against the CPU decoder (:func:`check_device_images`).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from encoder_service.batching import BatchPolicy
from encoder_service.core import EncoderCore, InputLimits, warm_up_jpeg
from encoder_service.device_images import DeviceImages, plan_jpeg
from encoder_service.images import ImageLimits, decode_image, fitting_pixels, parse_background
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import EncoderModel, ModelLoadError, load_model
from encoder_service.query_cache import QueryCache
from encoder_service.settings import EncoderSettings

log = logging.getLogger(__name__)

#: The start-up check's limit: mean absolute difference between the device decoder's model
#: input and the CPU decoder's, in levels of 255 (torchvision on the CPU: ~0.001; a broken
#: decoder: tens).
DEVICE_CHECK_MEAN_LEVELS = 2.0

#: torch's intra-op threads before any ``--threads`` changed them (one per physical core).
TORCH_DEFAULT_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class DeviceDefaults:
    """What ``--max-batch-size 0`` and ``--decode-workers 0`` mean on a device class."""

    max_batch_size: int
    decode_workers: int


def device_defaults(device: torch.device, cores: int | None = None) -> DeviceDefaults:
    """CPU: batches of 32 (the model is slow; larger batches only add latency) and at most 4
    decode threads (the model needs the cores). CUDA: batches of 256, which keep a GPU busy
    with ViT-B-32 (fewer, larger kernels), and up to 16 decode threads (header checks, tokens,
    and the images the device does not decode)."""
    cores = cores or os.cpu_count() or 1
    if device.type == "cuda":
        return DeviceDefaults(max_batch_size=256, decode_workers=max(1, min(16, cores)))
    return DeviceDefaults(max_batch_size=32, decode_workers=max(1, min(4, cores)))


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def set_torch_threads(threads: int) -> int:
    """``--threads``: N as given; 0: torch's own default (one per physical core) capped by the
    cores this process may use (a container's CPU quota, its affinity), which torch does not
    read. Logged; returns the count set."""
    cores = available_cores()
    chosen = threads or min(TORCH_DEFAULT_THREADS, cores)
    torch.set_num_threads(chosen)
    log.info(
        "torch CPU threads: %d (%s; %d cores available to this process, torch's default %d)",
        chosen,
        "--threads" if threads else "--threads 0: one per core",
        cores,
        TORCH_DEFAULT_THREADS,
    )
    return chosen


def calibrate_torch_threads(
    candidates: Sequence[int], run: Callable[[], object], *, repeats: int = 3
) -> tuple[int, dict[int, float]]:
    """The thread count among ``candidates`` under which ``run`` is fastest, and every timing.

    Each count is set (``torch.set_num_threads`` is process-wide) and tried on a fresh thread,
    as the model runs on the batcher's thread, not this one: one untimed run, then the median
    of ``repeats``. The caller sets the winner.
    """
    timings: dict[int, float] = {}
    for threads in dict.fromkeys(candidates):

        def timed(threads: int = threads) -> float:
            torch.set_num_threads(threads)
            run()
            spent = []
            for _ in range(repeats):
                started = time.perf_counter()
                run()
                spent.append(time.perf_counter() - started)
            return statistics.median(spent)

        with ThreadPoolExecutor(1) as pool:
            timings[threads] = pool.submit(timed).result()
    return min(timings, key=timings.__getitem__), timings


def calibrated_threads(model: EncoderModel, chosen: int) -> int:
    """``--threads 0`` on a CPU: one thread or one per core, whichever runs this model faster.

    One thread per core is not always faster: on 2 cores the 7 MB demo model ran a lone image
    in 1.7 ms on one thread and 5.9 ms on two (each of its small operations pays the thread
    team's hand-off), and a batch of 32 in 17.7 vs 20.6 ms; ViT-B-32 ran a batch of 32 images
    in 1,502 ms on one and 846 ms on two. So the two are timed at start on a lone image, 8
    images and 8 texts, and the faster kept (logged)."""
    if chosen <= 1 or model.device.type != "cpu":
        return chosen
    side = model.identity.image_size
    pixels = model.preprocess_image(Image.new("RGB", (side, side), (127, 127, 127)))
    tokens = model.tokenize(["a red striped cotton dress"])[0]

    def run() -> None:
        model.encode_images([pixels])
        model.encode_images([pixels] * 8)
        model.encode_texts([tokens] * 8)

    best, timings = calibrate_torch_threads([1, chosen], run)
    torch.set_num_threads(best)
    log.info(
        "torch CPU threads: %d (--threads 0: timed on this model, a lone image + 8 images + 8 texts: %s)",
        best,
        ", ".join(f"{n} thread{'s' if n > 1 else ''} {t * 1000:.1f} ms" for n, t in timings.items()),
    )
    return best


def core_from_settings(settings: EncoderSettings, metrics: EncoderMetrics | None = None) -> EncoderCore:
    """Loads the model (blocking) and builds the core as the settings say."""
    s = settings
    chosen = set_torch_threads(s.threads)
    model = load_model(s.model, s.pretrained_source, device=s.device, precision=s.precision)
    if s.threads == 0:
        calibrated_threads(model, chosen)
    defaults = device_defaults(model.device)
    side = model.identity.image_size
    limits = InputLimits(
        max_text_bytes=s.max_text_bytes,
        image=ImageLimits(
            max_bytes=s.max_image_bytes,
            max_pixels=s.max_image_pixels or fitting_pixels(side),
            background=parse_background(s.image_background),
            reduce_to=2 * side,
        ),
    )
    device_images = resolve_image_decode(s.image_decode, model, limits.image)
    batch = s.max_batch_size or defaults.max_batch_size
    workers = s.decode_workers or defaults.decode_workers
    log.info(
        "batches of up to %d, %d decode threads, images decoded on %s",
        batch,
        workers,
        "the CPU" if device_images is None else model.device,
    )
    cache = QueryCache(s.query_cache_mib * 1024 * 1024) if s.query_cache_mib else None
    log.info(
        "query-embedding cache: %s",
        f"{s.query_cache_mib} MiB for Embed texts" if cache is not None else "off (--query-cache-mib 0)",
    )
    if cache is not None and metrics is not None:
        metrics.watch_query_cache(cache)
    return EncoderCore(
        model,
        policy=BatchPolicy(batch, s.max_wait_ms, s.max_queue),
        limits=limits,
        decode_workers=workers,
        metrics=metrics,
        device_images=device_images,
        query_cache=cache,
    )


def resolve_image_decode(mode: str, model: EncoderModel, limits: ImageLimits) -> DeviceImages | None:
    """``cpu``: None. ``device``: the device decoder, or a start error naming the flag. ``auto``:
    the device decoder on CUDA when its check passes (a warning and the CPU otherwise)."""
    if mode == "cpu" or (mode == "auto" and model.device.type != "cuda"):
        return None
    device_images = DeviceImages.for_model(model.preprocess, model.device)
    problem = (
        "the model's image transform has a step the device path does not reproduce"
        if device_images is None
        else check_device_images(device_images, model, limits)
    )
    if problem is None:
        return device_images
    if mode == "device":
        raise ModelLoadError(f"--image-decode device: {problem}")
    log.warning("--image-decode auto: decoding on the CPU, the device decoder is unusable: %s", problem)
    return None


def check_device_images(device_images: DeviceImages, model: EncoderModel, limits: ImageLimits) -> str | None:
    """None if the device turns a test JPEG into the CPU decoder's model input (see
    DEVICE_CHECK_MEAN_LEVELS); else what went wrong."""
    data = warm_up_jpeg()
    jpeg = plan_jpeg(data, limits)
    if jpeg is None:
        return "the test JPEG was not planned for the device"
    try:
        got = device_images.decode([jpeg])[0]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(got, Exception):
        return f"{type(got).__name__}: {got}"
    want = model.preprocess_image(decode_image(data, limits))
    std = torch.tensor(device_images.transform.std).view(-1, 1, 1)
    levels = ((got.cpu() - want).abs() * std * 255).mean().item()
    log.info("device image decoder: mean difference to the CPU decoder %.3f levels of 255", levels)
    if not levels <= DEVICE_CHECK_MEAN_LEVELS:
        return (
            f"its test picture is {levels:.2f} levels of 255 from the CPU decoder's "
            f"(limit {DEVICE_CHECK_MEAN_LEVELS})"
        )
    return None
