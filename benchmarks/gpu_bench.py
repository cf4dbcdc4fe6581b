"""The encoder's GPU check in one run: correctness on the device, in-process ceilings, and the
service end to end over gRPC from many client processes, written as one results table.

    python benchmarks/gpu_bench.py --out DIR              # on a GPU machine (benchmarks/gpu_check.sh)
    python benchmarks/gpu_bench.py --rehearse --out DIR   # the same steps on the CPU, tiny model, short cells

Steps (each prints as it goes; the table is written at the end, and partly after each step):

1. checks: fp16 and bf16 vectors against fp32 (targets: cosine >= 0.999), and device-decoded
   against CPU-decoded images (cosine >= 0.995), on the demo catalog (trained clipsearch-demo
   and ViT-B-32 with random weights), with the model-input pixel differences;
2. in process, same model and precision as the service: the device path (header check, decode,
   resize, encode) and the CPU path in batches of 64, the encode alone at 64 and 256 in fp16 and
   bf16, texts at 64 and 256, and CUDA-graph replay of the image tower (GPU only);
3. the service (``python -m encoder_service``, its own process) driven by client processes:
   64 images per call, 1 image per call, 64 texts per call, each closed loop (peak), then open
   loop at half of that peak (latency); then the same image cells with ``--image-decode cpu``.

Clients send the demo catalog's products rendered at 256 px as JPEG q90 (7-11 kB each) and
distinct product titles. ViT-B-32's weights are RANDOM (no hub access): they run at the speed of
trained ones, and the run says so.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gpu_load import Load, LoadResult, run_load

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"images64": 5000.0, "images1": 1500.0, "texts64": 20000.0, "ratio": 0.8, "fp_cosine": 0.999}
TARGETS["decode_cosine"] = 0.995


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    pretrained: str
    device: str
    precision: str
    processes: int
    #: Calls in flight per client process, by cell.
    concurrency: dict[str, int]
    seconds: float
    open_seconds: float
    #: Catalog images (and texts) for the checks.
    check_items: int
    server_flags: tuple[str, ...] = ()
    #: torch CPU threads in this process (the rehearsal: 1, like its servers; on a shared 2-core
    #: machine 2 OpenMP threads ran 10-20x slower); None: torch's default.
    torch_threads: int | None = None
    #: --image-decode of the device-path server: auto on a GPU (falls back, and says so, if the
    #: device decoder is unusable there); device in the rehearsal (torchvision on the CPU).
    device_decode: str = "auto"
    per_call: int = 64
    image_side: int = 256


GPU = Profile(
    "gpu",
    "ViT-B-32",
    "random",
    "cuda",
    "fp16",
    processes=8,
    concurrency={"images64": 3, "images1": 16, "texts64": 4},
    seconds=10.0,
    open_seconds=8.0,
    check_items=256,
)
REHEARSE = Profile(
    "rehearse",
    "clipsearch-tiny",
    "random",
    "cpu",
    "fp32",
    processes=2,
    concurrency={"images64": 2, "images1": 8, "texts64": 2},
    seconds=3.0,
    open_seconds=3.0,
    check_items=16,
    server_flags=("--threads", "1", "--decode-workers", "2"),
    torch_threads=1,
    device_decode="device",
)


@dataclass
class Report:
    profile: Profile
    environment: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    in_process: dict[str, float | str] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- inputs --------------------------------------------------------------------------------------


@functools.cache
def catalog(n: int, side: int) -> tuple[list[bytes], list[str]]:
    """The demo catalog's first n products (seed 7): JPEG q90 at ``side`` px, and distinct titles."""
    from clipsearch.apps.demo.catalog import make_products, render_product

    images, texts = [], []
    for product in make_products(n, seed=7):
        buffer = io.BytesIO()
        render_product(product, side).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
        texts.append(f"{product.title}, item {product.id}")
    return images, texts


# -- 1. checks -----------------------------------------------------------------------------------


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run_checks(profile: Profile, report: Report) -> None:
    from encoder_service.weights import DEMO_CHECKPOINT, DEMO_MODEL

    images, texts = catalog(profile.check_items, profile.image_side)
    for name, pretrained in ((DEMO_MODEL, str(DEMO_CHECKPOINT)), ("ViT-B-32", "random")):
        log(f"checks: {name}")
        check_model(profile, report, name, pretrained, images, texts)
        free_gpu(profile)


def check_model(
    profile: Profile, report: Report, name: str, pretrained: str, images: list[bytes], texts: list[str]
) -> None:
    import torch

    from encoder_service.device_images import DeviceImages, plan_jpeg
    from encoder_service.images import ImageLimits, decode_image
    from encoder_service.model import load_model

    limits = ImageLimits()
    model = load_model(name, pretrained, device=profile.device, precision="fp32")
    report.environment[f"text prefix ({name})"] = model.text_prefix

    def encode(rows: list, kind: str) -> np.ndarray:
        forward = model.encode_images if kind == "image" else model.encode_texts
        return np.concatenate([forward(rows[i : i + 64]) for i in range(0, len(rows), 64)])

    cpu_pixels = [model.preprocess_image(decode_image(data, limits)) for data in images]
    tokens = list(model.tokenize(texts))
    reference = {"image": encode(cpu_pixels, "image"), "text": encode(tokens, "text")}
    for precision in ("fp16", "bf16") if profile.device == "cuda" else ("bf16",):
        model.precision = precision
        for kind, rows in (("image", cpu_pixels), ("text", tokens)):
            c = cosines(encode(rows, kind), reference[kind])
            report.checks.append(
                _check(name, pretrained, f"{precision} vs fp32, {kind}s", c, TARGETS["fp_cosine"])
            )
    model.precision = "fp32"
    device_images = DeviceImages.for_model(model.preprocess, model.device)
    if device_images is None:
        report.notes.append(f"{name}: its transform has no device path")
        return
    plans = [plan_jpeg(data, limits) for data in images]
    decoded = device_images.decode([p for p in plans if p is not None])
    if len(decoded) != len(images) or any(isinstance(d, Exception) for d in decoded):
        report.notes.append(f"{name}: some catalog JPEGs did not take the device path or failed on it")
        return
    std = torch.tensor(device_images.transform.std).view(-1, 1, 1)
    levels = torch.stack([(d.cpu() - c).abs() * std * 255 for d, c in zip(decoded, cpu_pixels, strict=True)])
    c = cosines(encode(decoded, "image"), reference["image"])
    row = _check(name, pretrained, "device- vs CPU-decoded images, fp32", c, TARGETS["decode_cosine"])
    row["pixels"] = (
        f"mean {levels.mean():.3f}, max {levels.max():.0f} levels of 255; "
        f"{(levels > 1.001).float().mean() * 100:.2f}% of values off by more than 1"
    )
    report.checks.append(row)


def free_gpu(profile: Profile) -> None:
    if profile.device == "cuda":
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _check(model: str, pretrained: str, what: str, c: np.ndarray, target: float) -> dict[str, Any]:
    label = "random" if pretrained == "random" else Path(pretrained).name
    row = {
        "model": f"{model} ({label})",
        "what": what,
        "n": len(c),
        "min": float(c.min()),
        "mean": float(c.mean()),
    }
    row["target"], row["pass"] = target, bool(c.min() >= target)
    log(f"  {row['model']} {what}: min {row['min']:.5f} mean {row['mean']:.5f}")
    return row


# -- 2. in process -------------------------------------------------------------------------------


def rate(step, items: int, seconds: float, sync=lambda: None) -> float:
    """Items per second of ``step`` (after two warm-up steps), over at least ``seconds``."""
    step()
    step()
    sync()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    sync()
    return steps * items / (time.perf_counter() - start)


def run_in_process(profile: Profile, report: Report) -> None:
    import torch

    from encoder_service.device_images import DeviceImages, plan_jpeg
    from encoder_service.images import ImageLimits, decode_image
    from encoder_service.model import load_model

    seconds = 3.0 if profile.device == "cuda" else 1.0
    out = report.in_process
    model = load_model(profile.model, profile.pretrained, device=profile.device, precision=profile.precision)
    images, texts = catalog(256, profile.image_side)
    limits = ImageLimits()
    batch = profile.per_call
    device_images = DeviceImages.for_model(model.preprocess, model.device)
    assert device_images is not None
    counter = iter(range(10**9))

    def chunk(items: list, size: int) -> list:
        start = next(counter) * size % (len(items) - size + 1)
        return items[start : start + size]

    def device_path() -> None:
        plans = [plan_jpeg(data, limits) for data in chunk(images, batch)]
        model.encode_images(device_images.decode(plans))  # type: ignore[arg-type]

    def cpu_path() -> None:
        model.encode_images([model.preprocess_image(decode_image(d, limits)) for d in chunk(images, batch)])

    def measure(key: str, step, items: int) -> None:
        try:
            out[key] = rate(step, items, seconds)
        except Exception as exc:  # one failed measurement must not cost the others
            out[key] = f"failed: {type(exc).__name__}: {exc}"

    log("in process: image paths")
    measure(f"device decode + encode, batch {batch}", device_path, batch)
    measure(f"CPU decode (1 thread) + encode, batch {batch}", cpu_path, batch)
    try:
        ready = device_images.decode([plan_jpeg(d, limits) for d in images])  # type: ignore[misc]
        assert all(isinstance(r, torch.Tensor) for r in ready), "device decode failed"
    except Exception:
        ready = [model.preprocess_image(decode_image(d, limits)).to(model.device) for d in images]
    precisions = ("fp16", "bf16") if profile.device == "cuda" else (profile.precision,)
    for precision in precisions:
        model.precision = precision
        for size in (batch, 256):
            measure(
                f"encode only, {precision}, batch {size}", lambda n=size: model.encode_images(ready[:n]), size
            )
    model.precision = profile.precision
    log("in process: texts")
    for size in (batch, 256):
        measure(
            f"texts: tokenize + encode, batch {size}",
            lambda n=size: model.encode_texts(list(model.tokenize(chunk(texts, n)))),
            size,
        )
    if profile.device == "cuda":
        log("in process: CUDA graphs")
        for size in (batch, 256):
            key = f"encode only, CUDA graph replay, {profile.precision}, batch {size}"
            try:
                out[key] = graph_rate(model, torch.stack(ready[:size]), seconds)  # type: ignore[arg-type]
            except Exception as exc:
                out[key] = f"failed: {type(exc).__name__}: {exc}"
    for key, value in out.items():
        log(f"  {key}: {value if isinstance(value, str) else f'{value:,.0f}/s'}")


def graph_rate(model, pixels, seconds: float) -> float:
    """Images/s of the image tower captured once as a CUDA graph and replayed (fp16/bf16 autocast)."""
    import torch
    from torch.nn import functional as F

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(model.precision, torch.float32)
    net, static = model.model, pixels.clone()

    def forward() -> torch.Tensor:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False):
            return F.normalize(net.encode_image(static).float(), dim=-1)

    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = forward()

        def step() -> None:
            static.copy_(pixels)
            graph.replay()
            output.cpu()

        return rate(step, len(pixels), seconds, torch.cuda.synchronize)


# -- 3. the service ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python -m encoder_service`` as its own process, at its default log level (INFO: one line
    per call, as deployed). Its log goes to ``log_path`` without the per-call lines, which are
    only counted (at thousands of calls a second they would outgrow the files that come back)."""

    def __init__(self, profile: Profile, image_decode: str, log_path: Path):
        self.port, self.metrics_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        command = [
            sys.executable,
            *("-m", "encoder_service", "--port", str(self.port), "--metrics-port", str(self.metrics_port)),
            *("--model", profile.model, "--pretrained", profile.pretrained, "--device", profile.device),
            *("--precision", profile.precision, "--image-decode", image_decode),
            *("--max-queue", "8192", "--max-concurrent-rpcs", "1024"),
            *profile.server_flags,
        ]
        self.command = " ".join(command[1:])
        self.log = log_path.open("a")
        self.log.write(f"\n=== {self.command}\n")
        self.rpc_lines = 0
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if " clipsearch.rpc: " in line or " clipsearch.rpc " in line:
                self.rpc_lines += 1
            else:
                self.log.write(line)
                self.log.flush()

    def __enter__(self) -> Server:
        from clipsearch.health import wait_until_serving

        try:
            wait_until_serving(self.address, timeout_s=300)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._reader.join(timeout=10)
        self.log.write(f"=== ({self.rpc_lines} per-call 'clipsearch.rpc' lines counted, not kept)\n")
        self.log.close()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        page = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        out = {}
        for name, value in re.findall(
            r"^(clipsearch_encoder_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", page, re.M
        ):
            out[name] = float(value)
        return out


class GpuSampler:
    """Mean GPU utilization (and peak memory) while a cell runs, read from nvidia-smi."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.utilization: float | None = None
        self.memory_mib: float | None = None

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._process = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self._process.terminate()
        output, _ = self._process.communicate(timeout=10)
        rows = [line.split(",") for line in output.strip().splitlines() if line.count(",") == 1]
        values = [(float(u), float(m)) for u, m in rows if u.strip().isdigit()]
        if values:
            self.utilization = float(np.mean([u for u, _ in values]))
            self.memory_mib = max(m for _, m in values)


def run_cell(
    servers: list[Server], load: Load, items: list, name: str, decode: str, gpu: bool
) -> dict[str, Any]:
    before = [server.metrics() for server in servers]
    cpu_before = sum(server.cpu_seconds() for server in servers)
    with GpuSampler(gpu) as sampler:
        started = time.perf_counter()
        result: LoadResult = run_load(load, items)
        wall = time.perf_counter() - started
    after = [server.metrics() for server in servers]
    cpu_after = sum(server.cpu_seconds() for server in servers)

    def delta(key: str) -> float:
        return sum(a.get(key, 0.0) - b.get(key, 0.0) for a, b in zip(after, before, strict=True))

    kind = "image" if load.kind == "images" else "text"
    batches = delta(f'clipsearch_encoder_batch_size_count{{kind="{kind}"}}')
    decodes = {
        path: int(delta(f'clipsearch_encoder_image_decodes_total{{path="{path}"}}'))
        for path in ("device", "cpu", "fallback")
    }
    if decode != "cpu" and load.kind == "images" and not decodes["device"]:
        decode += " (unusable: decoded on the CPU, see the server log)"
    cell = {
        "cell": name,
        "image_decode": decode,
        "servers": len(servers),
        **result.as_dict(),
        "mean_batch": round(delta(f'clipsearch_encoder_batch_size_sum{{kind="{kind}"}}') / batches, 1)
        if batches
        else 0.0,
        #: Share of the wall time the model thread spent in batches (1.0: the model is the limit).
        "model_busy": round(
            delta(f'clipsearch_encoder_model_seconds_sum{{kind="{kind}"}}') / wall / len(servers), 2
        ),
        "server_cpu_cores": round((cpu_after - cpu_before) / wall, 2),
        "gpu_util_pct": None if sampler.utilization is None else round(sampler.utilization),
        "gpu_mem_mib": sampler.memory_mib,
        "decodes": decodes,
        "rejected": int(delta("clipsearch_encoder_rejected_items_total")),
    }
    log(
        f"  {name} [{decode}, {len(servers)} server(s)]: {cell['items_per_s']:,.0f} {load.kind}/s, "
        f"p50/p95/p99 {result.latency()} ms, mean batch {cell['mean_batch']}, "
        f"model busy {cell['model_busy']}, server CPU {cell['server_cpu_cores']} cores, "
        f"GPU {cell['gpu_util_pct']}%, errors {dict(result.errors) or 0}"
    )
    return cell


def run_service(profile: Profile, report: Report, out: Path) -> None:
    images, titles = catalog(256, profile.image_side)
    texts = [f"{t} {i // 256}" for i, t in enumerate(titles * 4)]  # 1,024 distinct titles
    gpu = profile.device == "cuda"
    items = {"images": images, "texts": texts}
    specs = {
        "images64": ("images", profile.per_call),
        "images1": ("images", 1),
        "texts64": ("texts", profile.per_call),
    }

    def cell(
        servers: list[Server], name: str, decode: str, seconds: float, rate: float | None = None
    ) -> dict:
        kind, per_call = specs[name]
        address = ",".join(server.address for server in servers)
        load = Load(address, kind, per_call, profile.processes, profile.concurrency[name], seconds, rate=rate)
        label = name if rate is None else f"{name} at half peak"
        result = run_cell(servers, load, items[kind], label, decode, gpu)
        report.cells.append(result)
        save(report, out)
        return result

    # The device path: peaks, then latency at half of each peak.
    decode = profile.device_decode
    log(f"service: --image-decode {decode}")
    with Server(profile, decode, out / "server-device.log") as server:
        report.environment["server (device decode)"] = server.command
        peaks = {name: cell([server], name, decode, profile.seconds)["calls_per_s"] for name in specs}
        for name, peak in peaks.items():
            if peak:
                cell([server], name, decode, profile.open_seconds, rate=peak / 2)
    # Decode where it is fastest: the same image cells with the CPU decoder (more decode threads).
    log("service: --image-decode cpu")
    with Server(profile, "cpu", out / "server-cpu.log") as server:
        report.environment["server (CPU decode)"] = server.command
        for name in ("images64", "images1"):
            cell([server], name, "cpu", profile.seconds)
    # Is one process's per-call Python work the limit? Two server processes on the same device.
    log("service: two server processes, one image per call")
    with (
        Server(profile, decode, out / "server-device.log") as first,
        Server(profile, decode, out / "server-device-2.log") as second,
    ):
        cell([first, second], "images1", decode, profile.seconds)


# -- environment and report ----------------------------------------------------------------------


def environment(profile: Profile) -> dict[str, Any]:
    import grpc
    import open_clip
    import PIL
    import torch
    import torchvision

    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env: dict[str, Any] = {
        "profile": profile.name,
        "model": f"{profile.model} ({profile.pretrained}"
        + (", WEIGHTS ARE RANDOM)" if profile.pretrained == "random" else ")"),
        "device": profile.device,
        "precision": profile.precision,
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "open_clip": open_clip.__version__,
        "grpcio": grpc.__version__,
        "pillow": PIL.__version__,
    }
    if profile.device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
        env["cuda"] = torch.version.cuda
    return env


def fmt(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:,.0f}"


def markdown(report: Report) -> str:
    p = report.profile
    env = report.environment
    lines = [
        f"## GPU check ({p.name}): {env.get('model')}, {p.device}, {p.precision}",
        "",
        "`"
        + ("benchmarks/gpu_check.sh --rehearse" if p.name == "rehearse" else "benchmarks/gpu_check.sh")
        + "`",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in env.items() if not k.startswith("server")),
        "",
    ]
    if p.pretrained == "random":
        lines += [f"**{p.model} has RANDOM weights** (no hub access): same speed as trained weights.", ""]
    main_cells = [c for c in report.cells if c["servers"] == 1 and c["image_decode"] != "cpu"]
    cells = {c["cell"]: c for c in reversed(main_cells)}  # the first of each name: the peaks
    inproc_key = f"device decode + encode, batch {p.per_call}"
    inproc = report.in_process.get(inproc_key)
    lines += [
        "| figure | target | measured | pass |",
        "|---|---|---|---|",
    ]
    for name, target_key, unit in (
        ("images64", "images64", "images/s"),
        ("images1", "images1", "images/s"),
        ("texts64", "texts64", "texts/s"),
    ):
        cell = cells.get(name)
        if cell:
            target, got = TARGETS[target_key], cell["items_per_s"]
            verdict = "yes" if got >= target else "NO"
            lines.append(f"| {cell['load']} | >= {target:,.0f} {unit} | {got:,.0f} {unit} | {verdict} |")
    if cells.get("images64") and isinstance(inproc, float):
        ratio = cells["images64"]["items_per_s"] / inproc
        lines.append(
            f"| service (64 images per call) / in process ({inproc_key}: {inproc:,.0f}/s) | >= 0.8 | "
            f"{ratio:.2f} | {'yes' if ratio >= TARGETS['ratio'] else 'NO'} |"
        )
    for name in ("images64", "images1", "texts64"):
        half = cells.get(f"{name} at half peak")
        if half:
            lines.append(
                f"| p99 at half of peak: {half['load']} | stated | p99 {half['p99_ms']:.1f} ms "
                f"(p50 {half['p50_ms']:.1f}) | - |"
            )
    for row in report.checks:
        lines.append(
            f"| {row['model']}: {row['what']} ({row['n']}) | cosine >= {row['target']} | "
            f"min {row['min']:.5f}, mean {row['mean']:.5f} | {'yes' if row['pass'] else 'NO'} |"
        )
    lines += [
        "",
        "Service cells (`python -m encoder_service`, own process; clients in their own processes):",
        "",
        "| cell | decode | servers | throughput | calls/s | p50 / p95 / p99 ms | mean batch | model busy "
        "| server CPU (cores) | GPU util | decodes device / cpu / fallback | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cells:
        d = c["decodes"]
        util = "-" if c["gpu_util_pct"] is None else f"{c['gpu_util_pct']}%"
        lines.append(
            f"| {c['load']} | {c['image_decode']} | {c['servers']} | {c['items_per_s']:,.0f}/s | "
            f"{c['calls_per_s']:,.1f} | {c['p50_ms']:.1f} / {c['p95_ms']:.1f} / {c['p99_ms']:.1f} | "
            f"{c['mean_batch']} | {c['model_busy']} | "
            f"{c['server_cpu_cores']} | {util} | "
            f"{d['device']} / {d['cpu']} / {d['fallback']} | {c['errors'] or 0} |"
        )
    lines += [
        "",
        "In process (one thread, same model and precision; items/s):",
        "",
        "| what | items/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {fmt(v)} |" for k, v in report.in_process.items()]
    pixel_rows = [row for row in report.checks if "pixels" in row]
    if pixel_rows:
        lines += ["", "Model-input differences, device vs CPU decode:"]
        lines += [f"- {row['model']}: {row['pixels']}" for row in pixel_rows]
    if report.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in report.notes]]
    servers = [f"- `{v}`" for k, v in env.items() if k.startswith("server")]
    if servers:
        lines += ["", "Servers:", *servers]
    return "\n".join(lines) + "\n"


def save(report: Report, out: Path) -> None:
    (out / "results.md").write_text(markdown(report))
    data = asdict(report)
    data["profile"] = asdict(report.profile)
    (out / "results.json").write_text(json.dumps(data, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rehearse", action="store_true", help="on the CPU: tiny model, 2 client processes, short cells"
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    parser.add_argument("--skip", nargs="*", default=[], choices=("checks", "in-process", "service"))
    args = parser.parse_args(argv)
    profile = REHEARSE if args.rehearse else GPU
    args.out.mkdir(parents=True, exist_ok=True)
    if profile.torch_threads:
        import torch

        torch.set_num_threads(profile.torch_threads)
    report = Report(profile, environment=environment(profile))
    log(json.dumps(report.environment))
    if profile.pretrained == "random":
        log(f"NOTE: {profile.model} runs with RANDOM weights (no hub access); they run at the same speed")
    steps = (("checks", run_checks), ("in-process", run_in_process))
    for name, step in steps:
        if name in args.skip:
            continue
        try:
            step(profile, report)
        except Exception as exc:  # keep going: the other steps' figures still come back
            report.notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            log(f"{name} FAILED: {exc!r}")
        free_gpu(profile)
        save(report, args.out)
    if "service" not in args.skip:
        try:
            run_service(profile, report, args.out)
        except Exception as exc:
            report.notes.append(f"service failed: {type(exc).__name__}: {exc}")
            log(f"service FAILED: {exc!r}")
    save(report, args.out)
    print("\n" + markdown(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
