"""A local multi-node Ray cluster on loopback serving clipsearch (``clipsearch cluster up``, tests).

``ray.cluster_utils.Cluster`` starts a head node and ``--nodes`` worker nodes as separate
raylets on this machine (as Ray's own Serve tests do). The head runs Serve's proxy, the
ingress and the encoder; worker ``n`` offers ``clipsearch_copy_{n % copies}``, so it
holds that copy of every shard group.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Before Ray is imported: no usage stats, and every node on 127.0.0.1.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray waits 30 s for a new head's GCS server to write its port; on a busy 2-core machine (a
# test suite beside a benchmark) it once took longer and the start failed. 120 s is what Ray
# itself allows a GCS on RocksDB; operators can still set their own.
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")

import ray

from clipsearch.cluster.app import ClusterConfig, deploy

log = logging.getLogger(__name__)


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

    node: dict[str, Any] = {"include_dashboard": False, "object_store_memory": 80 * 1024**2}
    cluster, workers = start_nodes(
        {"num_cpus": head_cpus, **node},
        [{"num_cpus": worker_cpus, "resources": r, **node} for r in worker_resources],
    )
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        deploy(config, grpc_port=grpc_port, http_port=http_port)
        yield LocalCluster(cluster, workers, f"127.0.0.1:{grpc_port}")
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


#: What Ray raises when a node's process never comes up: a raylet that does not register
#: with the GCS within 30 s (a literal in ray._private.node), a GCS that does not write its
#: port file within RAY_gcs_server_port_wait_time_s.
NODE_START_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")


def start_nodes(head: dict[str, Any], workers: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
    """A ``ray.cluster_utils.Cluster`` with its head and worker nodes, all registered.

    Twice in fresh-clone CI runs beside a CPU-bound job (load 2-5 on 2 cores, a pytest
    process full of gRPC threads) a node's process never came up: no raylet log at all once,
    no GCS log the other time (the child hung before it started, as forked children of a
    threaded process can). So after exactly those timeouts, what started is shut down and the
    start is tried once more; any other failure is raised at once."""
    from ray.cluster_utils import Cluster

    for attempt in (1, 2):
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args=head)
            nodes = [cluster.add_node(**args) for args in workers]
            cluster.wait_for_nodes()
            return cluster, nodes
        except Exception as error:
            if cluster is not None:
                cluster.shutdown()
            if attempt == 2 or not any(timeout in str(error) for timeout in NODE_START_TIMEOUTS):
                raise
            log.warning("a Ray node did not come up (%s); starting the local cluster again", error)
    raise AssertionError("unreachable")
