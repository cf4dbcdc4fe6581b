"""Encoder throughput and latency, side by side in one run.

For each model (the demo model: its checkpoint if it exists, else its architecture with
random weights; and ViT-B-32 with random weights), two servers run as real processes (`clipsearch serve
encoder`): batching on (the defaults) and `--max-batch-size 1`. Closed-loop callers
send one image per call at concurrency 1, 8 and 32, alternating between the two servers
cell by cell, so both see the same machine. Then, with the servers idle, in-process
open_clip runs the same work (decode, preprocess, encode) in batches of the service's
max batch size. Also: how fast hostile inputs are refused.

    python benchmarks/encoder_bench.py [--quick] [--models ...] [--write-docs]

Prints a markdown table; ``--write-docs`` puts it under "## Encoder" in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from _servers import free_port, serve
from PIL import Image

from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from encoder_service.settings import EncoderSettings
from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
CONCURRENCY = (1, 8, 32)


@dataclass
class Cell:
    calls: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def latency(self) -> str:
        return " / ".join(f"{self.percentile(q):.0f}" for q in (50, 95, 99))


@dataclass
class ModelResult:
    model: str
    pretrained: str
    on: dict[int, Cell] = field(default_factory=dict)
    off: dict[int, Cell] = field(default_factory=dict)
    mean_batch: dict[int, float] = field(default_factory=dict)
    in_process_rate: float = 0.0
    encode_only_rate: float = 0.0
    one_call_rate: float = 0.0
    hostile_ms: dict[str, float] = field(default_factory=dict)


def sample_jpeg(seed: int = 0, side: int = 256) -> bytes:
    """A product-photo-sized JPEG with texture (noise over a gradient), not a flat color."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, side, dtype=np.float32)[None, :, None].repeat(side, 0).repeat(3, 2)
    pixels = np.clip(gradient * 0.6 + rng.normal(90, 40, (side, side, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def closed_loop(address: str, concurrency: int, payload: bytes, seconds: float, min_calls: int) -> Cell:
    """``concurrency`` callers, each sending one-image calls back to back."""
    request = encoder_pb2.EmbedRequest(inputs=[encoder_pb2.EmbedInput(image=payload)])
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        warm_until = time.perf_counter() + min(2.0, seconds / 4)

        async def warm() -> None:
            while time.perf_counter() < warm_until:
                await stub.Embed(request, timeout=600)

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        start = time.perf_counter()
        stop_at = start + seconds
        cap = start + 4 * seconds

        async def caller() -> None:
            while True:
                now = time.perf_counter()
                if now >= cap or (now >= stop_at and len(latencies) >= min_calls):
                    return
                sent = time.perf_counter()
                await stub.Embed(request, timeout=600)
                latencies.append((time.perf_counter() - sent) * 1000)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return Cell(len(latencies), time.perf_counter() - start, latencies)


async def one_call_of(address: str, batch: int, payload: bytes, seconds: float) -> float:
    """Images per second when one caller sends ``batch`` images per call."""
    request = encoder_pb2.EmbedRequest(inputs=[encoder_pb2.EmbedInput(image=payload)] * batch)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        await stub.Embed(request, timeout=600)
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < seconds:
            await stub.Embed(request, timeout=600)
            calls += 1
        return calls * batch / (time.perf_counter() - start)


def in_process_rates(
    model: str,
    pretrained: str,
    payload: bytes,
    batch: int,
    seconds: float,
    device: str,
    precision: str,
    threads: int,
) -> tuple[float, float]:
    """open_clip in this process, ``batch`` images per step, images/s: (decode + preprocess +
    encode, one thread; encode alone, inputs already preprocessed)."""
    import open_clip
    import torch

    import encoder_service.model  # noqa: F401  (registers the shipped model configs)

    torch.set_num_threads(threads)

    net, _, preprocess = open_clip.create_model_and_transforms(
        model, pretrained=None if pretrained == "random" else pretrained
    )
    target = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu")
    )
    net = net.eval().to(target)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    def prepare() -> torch.Tensor:
        return torch.stack([preprocess(Image.open(io.BytesIO(payload)).convert("RGB")) for _ in range(batch)])

    def encode(pixels: torch.Tensor) -> None:
        with torch.inference_mode(), torch.autocast(target.type, dtype=dtype, enabled=dtype is not None):
            net.encode_image(pixels.to(target), normalize=True).float().cpu().numpy()

    ready = prepare()
    return _rate(lambda: encode(prepare()), batch, seconds), _rate(lambda: encode(ready), batch, seconds)


def _rate(step, batch: int, seconds: float) -> float:
    step()
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def mean_batch_size(metrics_port: int) -> tuple[float, float]:
    """(sum of batch sizes, number of batches) of image batches so far."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    total = re.search(r'clipsearch_encoder_batch_size_sum\{kind="image"\} ([0-9.e+]+)', page)
    count = re.search(r'clipsearch_encoder_batch_size_count\{kind="image"\} ([0-9.e+]+)', page)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def hostile_payloads() -> dict[str, encoder_pb2.EmbedInput]:
    bomb = io.BytesIO()
    Image.new("1", (9500, 9500)).save(bomb, "PNG")
    jpeg = sample_jpeg(1)
    return {
        "decompression bomb (90 Mpx PNG)": encoder_pb2.EmbedInput(image=bomb.getvalue()),
        "EPS": encoder_pb2.EmbedInput(image=b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n"),
        "truncated JPEG": encoder_pb2.EmbedInput(image=jpeg[: len(jpeg) // 2]),
        "zero bytes": encoder_pb2.EmbedInput(image=b""),
        "16 MiB payload": encoder_pb2.EmbedInput(image=b"\xff\xd8\xff" + bytes(16 * 1024 * 1024)),
        "1 MB text": encoder_pb2.EmbedInput(text="lorem ipsum " * 90_000),
    }


def hostile_latencies(address: str) -> dict[str, float]:
    """Worst of 3 tries per case, ms, each refused with INVALID_ARGUMENT."""
    out: dict[str, float] = {}
    with grpc.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        for name, item in hostile_payloads().items():
            worst = 0.0
            for _ in range(3):
                sent = time.perf_counter()
                try:
                    stub.Embed(encoder_pb2.EmbedRequest(inputs=[item]), timeout=60)
                    raise SystemExit(f"hostile input {name!r} was accepted")
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        raise SystemExit(
                            f"hostile input {name!r}: {error.code()} {error.details()}"
                        ) from None
                worst = max(worst, (time.perf_counter() - sent) * 1000)
            out[name] = worst
    return out


def bench_model(model: str, pretrained: str, args: argparse.Namespace, logs: Path) -> ModelResult:
    result = ModelResult(model, pretrained)
    payload = sample_jpeg(side=image_side(model))
    batch = default_batch(args.device)
    common = [
        *("--model", model, "--pretrained", pretrained, "--device", args.device),
        *("--precision", args.precision, "--threads", str(args.threads)),
    ]
    on_metrics, off_metrics = free_port(), free_port()
    print(f"\n== {model} ({pretrained}) ==", flush=True)
    with (
        serve("encoder", *common, "--metrics-port", str(on_metrics), log_dir=logs) as on,
        serve(
            "encoder", *common, "--max-batch-size", "1", "--metrics-port", str(off_metrics), log_dir=logs
        ) as off,
    ):
        for concurrency in CONCURRENCY:
            seconds = args.seconds * (2 if model == "ViT-B-32" and concurrency > 1 else 1)
            min_calls = 2 * concurrency
            before = mean_batch_size(on_metrics)
            result.on[concurrency] = asyncio.run(closed_loop(on, concurrency, payload, seconds, min_calls))
            after = mean_batch_size(on_metrics)
            batches = after[1] - before[1]
            result.mean_batch[concurrency] = (after[0] - before[0]) / batches if batches else 0.0
            result.off[concurrency] = asyncio.run(closed_loop(off, concurrency, payload, seconds, min_calls))
            print(
                f"  c={concurrency:>2}: on {result.on[concurrency].rate:7.1f}/s "
                f"(mean batch {result.mean_batch[concurrency]:.1f}), "
                f"off {result.off[concurrency].rate:7.1f}/s",
                flush=True,
            )
        result.one_call_rate = asyncio.run(one_call_of(on, batch, payload, args.seconds))
        result.hostile_ms = hostile_latencies(on)
    result.in_process_rate, result.encode_only_rate = in_process_rates(
        model, pretrained, payload, batch, args.seconds, args.device, args.precision, args.threads
    )
    print(
        f"  one call of {batch}: {result.one_call_rate:.1f}/s; "
        f"in-process batch {batch}: {result.in_process_rate:.1f}/s "
        f"(encode only {result.encode_only_rate:.1f}/s)"
    )
    return result


def machine(device: str, precision: str) -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch

    load = os.getloadavg()[0]
    accelerator = (
        f"{torch.cuda.get_device_name(0)}, --device {device} --precision {precision}"
        if device != "cpu" and torch.cuda.is_available()
        else f"CPU only, --precision {precision}"
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {accelerator}, torch {torch.__version__}, "
        f"Python {platform.python_version()}; "
        f"load average {load:.1f} at the start (the machine was shared with other work)"
    )


def markdown(results: list[ModelResult], args: argparse.Namespace, header: str) -> str:
    s = EncoderSettings()
    batch = default_batch(args.device)
    lines = [
        "## Encoder",
        "",
        "`python benchmarks/encoder_bench.py" + (" --quick" if args.quick else "") + " --write-docs` — "
        "closed-loop callers, one JPEG per call (128 px for the small models, like the demo catalog's; "
        "256 px for ViT-B-32), against two `clipsearch serve encoder` processes "
        f"(batching on: the defaults, batches of up to {batch}, `--max-wait-ms {s.max_wait_ms:g}`; off: "
        "`--max-batch-size 1`), alternating cell by cell; then in-process open_clip doing the same "
        f"decode + preprocess + encode in batches of {batch} in one thread (and the encode "
        "alone, on inputs preprocessed beforehand), servers idle.",
        "",
        f"Machine: {header}. `--threads {args.threads}` for servers and in-process alike. "
        f"{args.seconds:g} s per cell (twice that for ViT-B-32 at concurrency > 1). "
        "Throughput in images/s, latency p50 / p95 / p99 in ms.",
        "",
        "| model | concurrency | batching on | p50 / p95 / p99 | mean batch | `--max-batch-size 1` | "
        "p50 / p95 / p99 | on / off |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in CONCURRENCY:
            on, off = r.on[c], r.off[c]
            lines.append(
                f"| {r.model} | {c} | {on.rate:.1f} | {on.latency()} | {r.mean_batch[c]:.1f} | "
                f"{off.rate:.1f} | {off.latency()} | {on.rate / off.rate:.2f}x |"
            )
    lines += [
        "",
        "| model | batching on / off at 32 callers "
        f"| service / in-process, same batch: 1 call of {batch} images "
        f"vs batches of {batch} "
        f"| service with 32 callers of 1 image / in-process batches of {batch} "
        "| service with 32 callers / in-process encode alone |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} ({r.pretrained}) | **{r.on[32].rate / r.off[32].rate:.2f}x** | "
            f"**{r.one_call_rate / r.in_process_rate:.2f}** "
            f"({r.one_call_rate:.1f} / {r.in_process_rate:.1f}) | "
            f"{r.on[32].rate / r.in_process_rate:.2f} ({r.on[32].rate:.1f} / {r.in_process_rate:.1f}) | "
            f"{r.on[32].rate / r.encode_only_rate:.2f} ({r.on[32].rate:.1f} / {r.encode_only_rate:.1f}) |"
        )
    worst = {name: max(r.hostile_ms[name] for r in results) for name in results[0].hostile_ms}
    lines += [
        "",
        "Hostile inputs, each refused with INVALID_ARGUMENT (worst of 3 tries, over both models, ms): "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in worst.items())
        + ".",
        "",
        READING_NOTE,
        "",
    ]
    return "\n".join(lines)


READING_NOTE = """How to read it: at concurrency 1 there is nothing to batch, so on/off differ by noise only
(a lone caller is not held for `--max-wait-ms`). With closed-loop callers about half of
them are queued while the other half are on their way back, so batches of ~c/2 form. The
same-batch ratio compares like with like: one call of 32 images against open_clip encoding
batches of 32 in this process. With 32 callers of one image each, every image also pays a
gRPC call, a thread hop and a response; for ViT-B-32 that is noise next to the model, for
the small demo model it is most of the work, on the same 2 cores as the model (and as the
load generator)."""


def write_section(text: str, path: Path = DOCS) -> None:
    """Replaces the "## Encoder" section (up to the next "## ") or appends it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Encoder\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip() + "\n\n", current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.write_text(updated.rstrip() + "\n")


def default_batch(device: str) -> int:
    """What ``--max-batch-size 0`` (the default) means on ``device``: 32 on CPU, 256 on CUDA."""
    import torch

    from encoder_service.factory import device_defaults

    spec = "cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu")
    return device_defaults(torch.device(spec)).max_batch_size


def image_side(model: str) -> int:
    """Pixels a side of the sample JPEG: the demo catalog's 128 for small models, else 256."""
    import open_clip

    import encoder_service.model  # noqa: F401  (registers the shipped model configs)

    size = open_clip.get_model_config(model)["vision_cfg"]["image_size"]
    return 128 if (size[0] if isinstance(size, (list, tuple)) else size) <= 128 else 256


def default_models() -> list[tuple[str, str]]:
    """The demo model (its checkpoint; or its architecture with random weights, which runs at
    the same speed, until the checkpoint exists; or the tiny config) and ViT-B-32."""
    if DEMO_CHECKPOINT.is_file():
        first = (DEMO_MODEL, str(DEMO_CHECKPOINT))
    elif (
        Path(__file__).resolve().parents[1] / "encoder_service" / "model_configs" / f"{DEMO_MODEL}.json"
    ).is_file():
        first = (DEMO_MODEL, "random")
    else:
        first = ("clipsearch-tiny", "random")
    return [first, ("ViT-B-32", "random")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short cells (a smoke run, noisier)")
    parser.add_argument("--seconds", type=float, help="seconds per cell (default 10, quick 3)")
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME[=PRETRAINED]",
        help="default: the demo model (or tiny) and ViT-B-32",
    )
    parser.add_argument("--device", default="cpu", help="servers' and in-process --device (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads, servers and in-process alike (default 1: on a 2-core machine shared "
        "with other work, 2 OpenMP threads ran a small model 10x slower than 1)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS}")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    models = (
        [tuple(m.split("=", 1)) if "=" in m else (m, "random") for m in args.models]
        if args.models
        else default_models()
    )
    header = machine(args.device, args.precision)
    print(header)
    logs = Path(tempfile.mkdtemp(prefix="encoder-bench-"))
    results = [bench_model(model, pretrained, args, logs) for model, pretrained in models]
    text = markdown(results, args, header)
    print("\n" + text)
    if args.write_docs:
        write_section(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "model": r.model,
                        "pretrained": r.pretrained,
                        "on": {c: {"rate": r.on[c].rate, "p50": r.on[c].percentile(50)} for c in CONCURRENCY},
                        "off": {
                            c: {"rate": r.off[c].rate, "p50": r.off[c].percentile(50)} for c in CONCURRENCY
                        },
                        "mean_batch": r.mean_batch,
                        "in_process_rate": r.in_process_rate,
                        "encode_only_rate": r.encode_only_rate,
                        "one_call_rate": r.one_call_rate,
                        "hostile_ms": r.hostile_ms,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
