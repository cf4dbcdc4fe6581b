"""A local multi-node Ray cluster on loopback (``ray.cluster_utils.Cluster``) serving clipsearch.

Node 0 (the head) runs Serve's controller and proxy, the ingress and the encoder; worker
nodes offer the custom resources that place shard-group copies, so removing a worker
takes down exactly the copies it holds. Every node has spare logical CPUs, usage stats
and the dashboard are off, and the cluster is always shut down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def running_cluster(
    tmp: Path, *, groups: int, copies: int, worker_resources: list[dict[str, float]], **config: Any
) -> Iterator[Any]:
    from clipsearch.cluster.app import ClusterConfig
    from clipsearch.cluster.local import local_cluster

    settings = ClusterConfig(
        data_root=str(tmp / "cluster-data"), groups=groups, copies=copies, encoder=TINY_ENCODER, **config
    )
    with local_cluster(
        settings, worker_resources=worker_resources, grpc_port=free_port(), http_port=free_port()
    ) as running:
        yield running


@pytest.fixture(scope="module")
def cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    return lambda **kw: running_cluster(tmp_path_factory.mktemp("cluster"), **kw)
