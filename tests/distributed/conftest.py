"""A local multi-node Ray cluster on loopback (``ray.cluster_utils.Cluster``) serving clipsearch.

Node 0 (the head) runs Serve's controller and proxy, the ingress and the encoder; worker
nodes offer the custom resources that place shard-group copies, so removing a worker
takes down exactly the copies it holds. Every node has spare logical CPUs, usage stats
and the dashboard are off, and the cluster is always shut down.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before Ray is imported: no usage stats, and every node on 127.0.0.1 (Ray otherwise picks
# the machine's outward address; these tests stay on loopback).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray", reason="the distributed tests need the [ray] extra")

TINY_ENCODER = {"model": "clipsearch-tiny", "pretrained": "random", "decode_workers": 1, "threads": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    tmp: Path,
    *,
    groups: int,
    copies: int,
    worker_resources: list[dict[str, float]],
    worker_cpus: int = 0,
    **config: Any,
) -> Iterator[LocalCluster]:
    from ray import serve
    from ray.cluster_utils import Cluster

    from index_service.distributed.app import ClusterConfig, deploy

    node = {"include_dashboard": False, "object_store_memory": 80 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, **node})
    try:
        workers = [cluster.add_node(num_cpus=worker_cpus, resources=r, **node) for r in worker_resources]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        grpc_port = free_port()
        settings = ClusterConfig(
            data_root=str(tmp / "cluster-data"), groups=groups, copies=copies, encoder=TINY_ENCODER, **config
        )
        deploy(settings, grpc_port=grpc_port, http_port=free_port())
        yield LocalCluster(cluster, workers, f"127.0.0.1:{grpc_port}")
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    return lambda **kw: local_cluster(tmp_path_factory.mktemp("cluster"), **kw)
