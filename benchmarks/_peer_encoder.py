"""The encoder sides of the peer benchmark, for one model, all up at once.

* clipsearch: ``clipsearch serve encoder`` (our batcher, its defaults), called through
  ``clipsearch.EncoderClient``;
* pytriton: ``_pytriton_encoder.py`` in the PyTriton venv, Triton's dynamic batcher set to
  the same max batch size and wait, called through pytriton's ``ModelClient`` (gRPC);
* naive grpcio: ``_naive_encoder.py``, no batching, called through ``clipsearch.EncoderClient``.

All three load the model with open_clip from the same files and the same torch; a
cross-check embeds the same texts and images on each and compares the vectors.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _peer_procs import group_of_port, process, project_python, wait_for_log, workers
from _servers import free_port, serve
from encoder_bench import image_side, sample_jpeg

import encoder_service
from encoder_service.settings import EncoderSettings

TEXTS = [
    f"a {color} {pattern} {category}"
    for color in ("red", "blue", "black", "white", "green", "beige", "pink", "grey")
    for pattern in ("striped", "plain", "checked", "floral")
    for category in ("dress", "sneakers", "handbag", "t-shirt")
]
SIDES = ("clipsearch", "pytriton", "naive grpcio")
#: The configs our encoder registers (those of the encoder_service this interpreter imports).
MODEL_CONFIGS = Path(encoder_service.__file__).resolve().parent / "model_configs"


def write_inputs(model: str, folder: Path) -> Path:
    """Texts and 8 textured JPEGs (128 px for the small models like the demo catalog's, 256 px else)."""
    folder.mkdir(parents=True, exist_ok=True)
    side = image_side(model)
    images = []
    for seed in range(8):
        path = folder / f"image-{seed}.jpg"
        path.write_bytes(sample_jpeg(seed, side))
        images.append(str(path))
    inputs = folder / "inputs.json"
    inputs.write_text(json.dumps({"texts": TEXTS, "images": images}))
    return inputs


@contextlib.contextmanager
def encoder_sides(model: str, pretrained: str, args, logs: Path, pytriton_python: Path) -> Iterator[dict]:
    """Yields {"workers": {side: Worker}, "facts": {...}} with all three servers up and checked."""
    settings = EncoderSettings()
    batch = cpu_max_batch()
    inputs = write_inputs(model, logs / f"inputs-{model}")
    common = ["--model", model, "--pretrained", pretrained, "--threads", str(args.threads)]
    configs = ["--model-configs", str(MODEL_CONFIGS)]
    triton_ports = [free_port() for _ in range(3)]
    naive_port = free_port()
    started = time.perf_counter()
    with (
        process(
            [str(pytriton_python), "-u", "_pytriton_encoder.py", *common, *configs]
            + ["--max-batch-size", str(batch), "--max-wait-ms", str(settings.max_wait_ms)]
            + [
                f"--{name}-port={port}"
                for name, port in zip(("grpc", "http", "metrics"), triton_ports, strict=True)
            ],
            logs / f"pytriton-{model}.log",
            stop_signal=signal.SIGINT,  # Triton.serve() stops cleanly on SIGINT (KeyboardInterrupt)
        ) as triton,
        process(
            [project_python(), "-u", "_naive_encoder.py", "--port", str(naive_port), *common, *configs],
            logs / f"naive-{model}.log",
        ) as naive,
        # The query cache off: these 128 texts repeat every round, and the peers have no cache.
        serve("encoder", *common, "--device", "cpu", "--query-cache-mib", "0", log_dir=logs) as ours,
    ):
        wait_for_log(naive, logs / f"naive-{model}.log", "serving on")
        sdk = {"inputs": str(inputs), "channels": args.sdk_channels}
        with workers(
            (
                project_python(),
                "clipsearch-encoder",
                {**sdk, "address": ours},
                logs / f"worker-ours-{model}.log",
            ),
            (
                pytriton_python,
                "pytriton",
                {**sdk, "url": f"grpc://127.0.0.1:{triton_ports[0]}"},
                logs / f"worker-pytriton-{model}.log",
            ),
            (
                project_python(),
                "clipsearch-encoder",
                {**sdk, "address": f"127.0.0.1:{naive_port}"},
                logs / f"worker-naive-{model}.log",
            ),
        ) as started_workers:
            by_side = dict(zip(SIDES, started_workers, strict=True))
            facts = {"cross_check": cross_check(by_side)}  # also waits for Triton's models
            facts["startup_s"] = time.perf_counter() - started
            facts["settings"] = (
                f"{model} ({Path(pretrained).name}), CPU, fp32, torch threads {args.threads} everywhere; "
                "clipsearch: `clipsearch serve encoder` defaults but --query-cache-mib 0 "
                f"(max batch {batch}, --max-wait-ms {settings.max_wait_ms:g}, --threads {args.threads}) "
                f"and {settings.decode_workers} decode workers (0: by device); "
                f"pytriton: 1 model instance, DynamicBatcher(max_queue_delay_microseconds="
                f"{round(settings.max_wait_ms * 1000)}), max_batch_size {batch}, one "
                "ModelClient (gRPC) per caller thread; naive grpcio: grpc.server(ThreadPoolExecutor()) = "
                "min(32, cores + 4) calls at once, 1 forward pass per call; clipsearch and naive are called "
                f"through clipsearch.EncoderClient, {args.sdk_channels} (--sdk-channels)"
            )
            servers = {  # process groups, for CPU time (Triton's includes tritonserver and its stubs)
                "clipsearch": group_of_port(int(ours.rsplit(":", 1)[1])),
                "pytriton": triton.pid,
                "naive grpcio": naive.pid,
            }
            yield {"workers": by_side, "facts": facts, "servers": servers}


def cross_check(by_side: dict) -> dict:
    """Lowest cosine between our vectors and each peer's, over 4 texts and 4 images."""
    out = {}
    for kind in ("texts", "images"):
        vectors = {
            side: np.array(worker.ask(op="sample", workload={"kind": kind}, count=4))
            for side, worker in by_side.items()
        }
        for side in SIDES[1:]:
            a, b = vectors["clipsearch"].reshape(4, -1), vectors[side].reshape(4, -1)
            cosine = float(np.min(np.sum(a * b, axis=1)))
            out[f"{side} {kind}"] = cosine
            if cosine < 0.999:
                raise SystemExit(f"{side} does not run the same model as ours: {kind} cosine {cosine:.4f}")
    return out


@functools.cache
def _in_process(model: str, pretrained: str, threads: int):
    from _clip_model import ClipModel

    return ClipModel(model, pretrained, threads, MODEL_CONFIGS)


def cpu_max_batch() -> int:
    """The encoder's max batch on the CPU: ``--max-batch-size`` 0 means "by device"."""
    import torch

    from encoder_service.factory import device_defaults

    return EncoderSettings().max_batch_size or device_defaults(torch.device("cpu")).max_batch_size


def ceiling(model: str, pretrained: str, kind: str, batch: int, seconds: float, threads: int) -> float:
    """Items/s of open_clip in this process, ``batch`` items a step (tokenize or decode included)."""
    net = _in_process(model, pretrained, threads)
    folder_side = image_side(model)
    if kind == "texts":
        items = (TEXTS * (batch // len(TEXTS) + 1))[:batch]

        def step():
            return net.encode_texts(items)
    else:
        images = [sample_jpeg(i % 8, folder_side) for i in range(batch)]

        def step():
            return net.encode_images(images)

    step()
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)
