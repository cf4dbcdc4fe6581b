"""End-to-end ingest rate vs the encoder's own batched throughput, side by side.

Both servers run as real processes. In one run:
  A. the encoder alone: the catalog's images, already in memory, embedded in
     batches of --batch-size by --workers concurrent callers (the encoder's own
     batched throughput, the ceiling for ingest);
  B. `clipsearch ingest` of the same catalog: read files, embed over one
     EmbedStream, upsert durably on --workers threads;
  C. the same ingest with one upsert thread, for comparison.
Prints items/s and B/A (target >= 0.8).

    python benchmarks/ingest_bench.py [--products 600] [--model clipsearch-demo] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _servers import serve, timed

from clipsearch import EncoderClient, SearchClient
from clipsearch.apps.demo.catalog import generate_catalog
from clipsearch.catalog import read_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--model", default="clipsearch-demo")
    parser.add_argument("--pretrained", default=None, help="default: the shipped demo checkpoint")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 products")
    args = parser.parse_args()
    products = 200 if args.quick else args.products

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    catalog = generate_catalog(work / "catalog", n_products=products, seed=3, image_size=args.image_size)
    images = [(catalog.parent / row.image).read_bytes() for row in read_catalog(catalog)]
    encoder_flags = ["--model", args.model] + (["--pretrained", args.pretrained] if args.pretrained else [])

    with (
        serve("encoder", *encoder_flags, log_dir=work / "logs") as encoder_address,
        serve("index", "--data-dir", str(work / "index"), log_dir=work / "logs") as index_address,
    ):
        encoder = EncoderClient(encoder_address)
        encoder.embed_images(images[: args.batch_size])  # warm

        def encode_all() -> None:
            batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(encoder.embed_images, batches))

        encode_s, _ = timed(encode_all)
        rows = {}
        with SearchClient(encoder_address, index_address) as client:
            for workers in (args.workers, 1):
                name = f"bench_w{workers}"
                client.create_collection(name, num_shards=2)
                seconds, report = timed(
                    lambda n=name, w=workers: client.ingest(
                        catalog, collection=n, batch_size=args.batch_size, workers=w, resume=False
                    )
                )
                assert report.ingested == products and not report.failed, report
                rows[workers] = products / seconds
        model = encoder.model_info()

    encoder_rate = products / encode_s
    print(
        f"# {products} products ({args.image_size}px JPEG), model {model.name} ({model.pretrained}), "
        f"batch {args.batch_size}, {platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"
    )
    print(f"{'what':<42} {'items/s':>9} {'vs encoder':>11}")
    print(f"{'A. encoder alone (in-memory images)':<42} {encoder_rate:>9.1f} {1.0:>10.2f}x")
    print(
        f"{f'B. clipsearch ingest, {args.workers} workers':<42} {rows[args.workers]:>9.1f} "
        f"{rows[args.workers] / encoder_rate:>10.2f}x"
    )
    print(f"{'C. clipsearch ingest, 1 upsert thread':<42} {rows[1]:>9.1f} {rows[1] / encoder_rate:>10.2f}x")


if __name__ == "__main__":
    main()
