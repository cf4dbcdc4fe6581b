"""``clipsearch bulk-ingest``: join or start Ray, run :func:`clipsearch.cluster.bulk_ingest.bulk_ingest`,
report (the ``ray`` extra; the flags need only the standard library)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clipsearch.apps.cli.common import require_extra


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bulk-ingest", help="encode a large catalog with Ray Data actors and load the index (the [ray] extra)"
    )
    parser.add_argument("catalog", type=Path, help="CSV or JSONL with id, image and metadata columns")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--index", metavar="HOST:PORT", help="index address ($CLIPSEARCH_INDEX)")
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default $RAY_ADDRESS, else a local Ray)"
    )
    parser.add_argument("--encoders", type=int, default=2, help="encode actors (default 2)")
    parser.add_argument("--encoder-cpus", type=float, default=1.0, help="CPUs per encode actor (default 1)")
    parser.add_argument("--encoder-gpus", type=float, default=0.0, help="GPUs per encode actor (default 0)")
    parser.add_argument("--loaders", type=int, default=1, help="upsert actors (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encode batch (default 64)")
    parser.add_argument("--model", default=None, help="open_clip model (default: the demo model)")
    parser.add_argument("--pretrained", default=None, help="tag or checkpoint path, as `serve encoder`")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda (default auto)")
    parser.add_argument("--precision", default=None, help="fp32|fp16|bf16 (default fp32)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per encode actor")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="re-embed unchanged items")
    parser.add_argument("--embeddings-dir", default=None, help="also write the embeddings here (Parquet)")
    parser.add_argument("--num-shards", type=int, default=1, help="shards if created (default 1)")
    parser.add_argument("--index-spec", default="Flat", help="FAISS factory if created (default Flat)")
    parser.add_argument("--no-create", dest="create", action="store_false", help="require the collection")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    require_extra("ray", "bulk-ingest")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from clipsearch.apps.output import print_ingest_report
    from clipsearch.channel import DEFAULT_INDEX_ADDRESS, INDEX_ENV, resolve_address
    from clipsearch.cluster.bulk_ingest import BulkIngestOptions, CreateSpec, bulk_ingest

    encoder = {
        name: value
        for name in ("model", "pretrained", "device", "precision", "threads")
        if (value := getattr(args, name)) is not None
    }
    options = BulkIngestOptions(
        collection=args.collection,
        index_address=resolve_address(args.index, INDEX_ENV, DEFAULT_INDEX_ADDRESS),
        encoder=encoder,
        encoders=args.encoders,
        encoder_cpus=args.encoder_cpus,
        encoder_gpus=args.encoder_gpus,
        loaders=args.loaders,
        batch_size=args.batch_size,
        resume=args.resume,
        embeddings_dir=args.embeddings_dir,
        create=CreateSpec(args.num_shards, args.index_spec) if args.create else None,
    )
    ray.init(address=args.ray_address, log_to_driver=False, include_dashboard=False)
    try:
        report = bulk_ingest(args.catalog, options)
    finally:
        ray.shutdown()
    nodes = len(report.encoded_on)
    print_ingest_report(report, as_json=args.json, where=f" on {nodes} node(s)", encode_nodes=nodes)
    return 0
