"""``clipsearch cluster up``: a local multi-node Ray cluster serving the demo catalog (the ``ray`` extra)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
import threading
from pathlib import Path

from clipsearch.apps.cli.common import require_extra


def add(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="local multi-node Ray cluster (the [ray] extra)")
    action = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = action.add_parser("up", help="start it, serve the demo catalog until Ctrl-C")
    up.add_argument("--nodes", type=int, default=2, help="worker nodes (default 2)")
    up.add_argument("--groups", type=int, default=2, help="shard groups (default 2)")
    up.add_argument("--copies", type=int, default=2, help="copies of each group (default 2)")
    up.add_argument("--port", type=int, default=50060, help="gRPC port of the proxy (default 50060)")
    up.add_argument("--http-port", type=int, default=50061)
    up.add_argument("--data-root", type=Path, default=None, help="copies' data (default: a temp dir)")
    up.add_argument("--products", type=int, default=300, help="demo catalog size (0: no ingest)")
    up.set_defaults(handler=_up, parser=up)


def _up(args: argparse.Namespace) -> int:
    if args.nodes < args.copies:
        args.parser.error("--nodes must be >= --copies (each node holds one copy of every group)")
    require_extra("ray", "cluster up")
    from clipsearch.cluster.app import ClusterConfig
    from clipsearch.cluster.local import local_cluster

    root = args.data_root or Path(tempfile.mkdtemp(prefix="clipsearch-cluster-"))
    config = ClusterConfig(data_root=str(root / "index"), groups=args.groups, copies=args.copies)
    resources = [{f"clipsearch_copy_{n % args.copies}": 1.0} for n in range(args.nodes)]
    with local_cluster(
        config, worker_resources=resources, grpc_port=args.port, http_port=args.http_port
    ) as lc:
        if args.products:
            from clipsearch import SearchClient
            from clipsearch.apps.demo.catalog import generate_catalog

            catalog = generate_catalog(root / "catalog", n_products=args.products, seed=0)
            with SearchClient(lc.address, lc.address) as client:
                client.create_collection("products", num_shards=2, exist_ok=True)
                report = client.ingest(catalog, collection="products")
            print(f"ingested {report.ingested} products ({len(report.failed)} failed)")
        print(f"clipsearch cluster serving on {lc.address} ({args.nodes} worker nodes); Ctrl-C stops it")
        print(
            f"  clipsearch search --encoder {lc.address} --index {lc.address} "
            "--collection products --text 'a red dress'"
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
