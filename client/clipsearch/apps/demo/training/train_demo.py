"""Trains the `clipsearch-demo` CLIP model on the rendered demo catalog, on CPU.

    python -m clipsearch.apps.demo.training.train_demo --out encoder_service/weights/clipsearch-demo.pt

Contrastive image-text training (open_clip's ClipLoss with soft targets, see `loss.py`) on
products of catalog seed ``1000 + --seed`` paired with natural captions, plus an instance
loss between two augmented views of each image. Held-out retrieval figures on catalog seed
99 are logged as training goes; the saved checkpoint (fp16 state dict, as
``{"state_dict": ..., "clipsearch": {...}}`` which open_clip's `load_checkpoint` reads) is
reloaded through ``open_clip.create_model_and_transforms(..., pretrained=path)`` and scored
again before the script ends. Same seed, same thread count → same checkpoint.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from clipsearch.apps.demo.training.data import TrainingPool, catalog_image
from clipsearch.apps.demo.training.loss import instance_loss, multi_positive_clip_loss
from clipsearch.apps.demo.training.quality import (
    ImageFigures,
    TextFigures,
    measure_image_queries,
    measure_text_queries,
)

MODEL_NAME = "clipsearch-demo"
MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "model_configs"
TRAIN_CATALOG_SEED = 1000  # + --seed
EVAL_CATALOG_SEED = 99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--heavy", type=int, default=64, help="images per batch also seen degraded")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--instance-weight", type=float, default=0.25)
    parser.add_argument("--pool", type=int, default=8000, help="rendered training products")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-products", type=int, default=300)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (part of reproducibility)"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    open_clip.add_model_config(MODEL_CONFIGS)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    log(
        f"{MODEL_NAME}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{machine()}, torch {torch.__version__}, open_clip {open_clip.__version__}"
    )

    started = time.perf_counter()
    pool = TrainingPool(args.pool, TRAIN_CATALOG_SEED + args.seed, preprocess)
    held_out = HeldOutEval(args.eval_products, EVAL_CATALOG_SEED, preprocess, tokenizer)
    log(f"rendered {args.pool} training and {args.eval_products} held-out products in {elapsed(started)}")

    optimizer = torch.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6
    )
    warmup = max(1, args.steps // 20)
    batches = ThreadPoolExecutor(max_workers=1)  # renders step n+1's views while step n trains
    next_batch = batches.submit(
        pool.batch, np.random.default_rng([args.seed, 0]), args.batch_size, args.heavy
    )
    model.train()
    for step in range(1, args.steps + 1):
        batch = next_batch.result()
        if step < args.steps:
            next_batch = batches.submit(
                pool.batch, np.random.default_rng([args.seed, step]), args.batch_size, args.heavy
            )
        lr = args.lr * (step / warmup if step <= warmup else cosine(step - warmup, args.steps - warmup))
        for group in optimizer.param_groups:
            group["lr"] = lr

        images = model.encode_image(torch.cat([batch.view_a, batch.view_b]), normalize=True)
        texts = model.encode_text(tokenizer(batch.captions), normalize=True)
        view_a, view_b = images[: args.batch_size], images[args.batch_size :]
        scale = model.logit_scale.exp().clamp(max=100)
        # Both views are captioned: the degraded ones are still a red striped dress.
        targets = torch.cat([batch.targets, batch.targets[: args.heavy]])
        text_loss = multi_positive_clip_loss(images, texts, scale, targets)
        image_loss = instance_loss(view_b, view_a)
        loss = text_loss + args.instance_weight * image_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        if step % 25 == 0 or step == 1:
            log(
                f"step {step}/{args.steps} loss {loss.item():.3f} (text {text_loss.item():.3f}, "
                f"image {image_loss.item():.3f}) scale {scale.item():.1f} lr {lr:.2e} {elapsed(started)}"
            )
        if step % args.eval_every == 0 or step == args.steps:
            log(f"held-out @ step {step}: {held_out.summary(model)}")
            model.train()
    batches.shutdown()
    train_seconds = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args, train_seconds)
    log(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {elapsed(started)}")

    reloaded, _, reloaded_preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, pretrained=str(args.out)
    )
    final = HeldOutEval(args.eval_products, EVAL_CATALOG_SEED, reloaded_preprocess, tokenizer)
    log(f"held-out, checkpoint reloaded through open_clip: {final.summary(reloaded)}")
    return 0


class HeldOutEval:
    """Retrieval figures on a catalog the model does not train on, with the val transform."""

    def __init__(self, n: int, seed: int, preprocess, tokenizer):
        from clipsearch.apps.demo.catalog import make_products

        self.products = make_products(n, seed)
        self.images = [catalog_image(p) for p in self.products]
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.ids = np.array([p.id for p in self.products])

    @torch.no_grad()
    def figures(self, model) -> tuple[TextFigures, ImageFigures]:
        model.eval()
        catalog = self._encode_images(model, self.images)

        def top_k(queries: np.ndarray, k: int) -> list[list[str]]:
            order = np.argsort(-(queries @ catalog.T), axis=1, kind="stable")[:, :k]
            return [list(self.ids[row]) for row in order]

        def search_texts(queries: list[str], k: int) -> list[list[str]]:
            return top_k(model.encode_text(self.tokenizer(queries), normalize=True).numpy(), k)

        def search_images(datas: list[bytes], k: int) -> list[list[str]]:
            decoded = [Image.open(io.BytesIO(d)).convert("RGB") for d in datas]
            return top_k(self._encode_images(model, decoded), k)

        by_id = dict(zip(self.ids, self.images, strict=True))
        text = measure_text_queries(self.products, search_texts)
        image = measure_image_queries(self.products, lambda p: by_id[p.id], search_images, trials=100)
        return text, image

    def summary(self, model) -> str:
        text, image = self.figures(model)
        return (
            f"pair top-1 {text.pair_top1:.3f} ({text.pair_queries} queries), "
            f"pair P@{text.k} {text.pair_precision_at_k:.3f}, "
            f"exact top-1 {text.exact_top1:.3f} ({text.exact_queries} queries), "
            f"image→image top-1 {image.top1:.3f} ({image.trials} trials)"
        )

    def _encode_images(self, model, images: list[Image.Image]) -> np.ndarray:
        chunks = [
            model.encode_image(torch.stack([self.preprocess(i) for i in images[s : s + 128]]), normalize=True)
            for s in range(0, len(images), 128)
        ]
        return torch.cat(chunks).numpy()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's split: no decay on gains, biases, norms and the logit scale."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def save_checkpoint(model: torch.nn.Module, args: argparse.Namespace, train_seconds: float) -> None:
    """fp16 tensors (half the size); `load_state_dict` casts them into the fp32 model."""
    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    info = {
        "model": MODEL_NAME,
        "train_catalog_seed": TRAIN_CATALOG_SEED + args.seed,
        "eval_catalog_seed": EVAL_CATALOG_SEED,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_seconds": round(train_seconds, 1),
        "machine": machine(),
        "torch": str(torch.__version__),
        "open_clip": str(open_clip.__version__),
    }
    tmp = args.out.with_suffix(".tmp")
    torch.save({"state_dict": state, "clipsearch": info}, tmp)
    os.replace(tmp, args.out)


def machine() -> str:
    return (
        f"{platform.machine()} {platform.processor() or platform.system()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, Python {platform.python_version()}"
    )


def elapsed(started: float) -> str:
    seconds = time.perf_counter() - started
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
