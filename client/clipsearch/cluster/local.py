"""A local multi-node Ray cluster on loopback serving clipsearch: ``clipsearch cluster up``.

``ray.cluster_utils.Cluster`` starts a head node and ``--nodes`` worker nodes as separate
raylets on this machine (as Ray's own Serve tests do). The head runs Serve's proxy, the
ingress and the encoder; worker ``n`` offers ``clipsearch_copy_{n % copies}``, so it
holds that copy of every shard group. The demo catalog is ingested through the SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before Ray is imported: no usage stats, and every node on 127.0.0.1.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray

from clipsearch.cluster.app import ClusterConfig, deploy


@dataclass
class LocalCluster:
    cluster: Any
    workers: list[Any]
    address: str

    def kill_worker(self, number: int) -> None:
        """Kills the node's raylet and its workers, and waits until the cluster knows it is dead."""
        node = self.workers[number]
        self.cluster.remove_node(node, allow_graceful=False)
        for _ in range(600):
            if not any(n["NodeID"] == node.node_id and n["Alive"] for n in ray.nodes()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {node.node_id} still alive a minute after it was removed")


@contextmanager
def local_cluster(
    config: ClusterConfig,
    *,
    worker_resources: list[dict[str, float]],
    grpc_port: int,
    http_port: int,
    head_cpus: int = 3,
    worker_cpus: int = 0,
) -> Iterator[LocalCluster]:
    """Head + one worker per entry of ``worker_resources``, Serve deployed; always shut down."""
    from ray import serve
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {"include_dashboard": False, "object_store_memory": 80 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, **node})
    try:
        workers = [cluster.add_node(num_cpus=worker_cpus, resources=r, **node) for r in worker_resources]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        deploy(config, grpc_port=grpc_port, http_port=http_port)
        yield LocalCluster(cluster, workers, f"127.0.0.1:{grpc_port}")
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipsearch cluster up", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--groups", type=int, default=2, help="shard groups (default 2)")
    parser.add_argument("--copies", type=int, default=2, help="copies of each group (default 2)")
    parser.add_argument("--port", type=int, default=50060, help="gRPC port of the proxy (default 50060)")
    parser.add_argument("--http-port", type=int, default=50061)
    parser.add_argument("--data-root", type=Path, default=None, help="copies' data (default: a temp dir)")
    parser.add_argument("--products", type=int, default=300, help="demo catalog size (0: no ingest)")
    args = parser.parse_args(argv)
    if args.nodes < args.copies:
        parser.error("--nodes must be >= --copies (each node holds one copy of every group)")
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


if __name__ == "__main__":
    raise SystemExit(main())
