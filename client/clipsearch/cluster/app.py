"""The Serve application: encoder replicas, shard-group copies and the gRPC ingress.

Layout, for G shard groups with R copies each::

    ingress (1 replica, on the head) --> encoder (autoscaled replicas, a GPU each when present)
                                     \\-> shard-g{g}-c{c}: G x R deployments of one replica

Each copy is its own one-replica deployment so the ingress can address it: a search asks
one copy per group, a write must reach every copy. Copy ``c`` of every group asks for the
custom resource ``copy_resource.format(group=g, copy=c)`` (``clipsearch_copy_{copy}`` by
default), so the nodes that offer it decide placement: node c holds copy c of every group.

``ClusterConfig`` is data (a dict in a RayService's Serve config, flags in ``clipsearch
cluster up``); :func:`app_builder` is the ``import_path`` for ``serve run`` and KubeRay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ray import serve
from ray.serve.config import gRPCOptions

from clipsearch.cluster.copies import ShardCopy
from clipsearch.cluster.encoder_replica import EncoderReplica
from clipsearch.cluster.grpc_services import SERVICER_FUNCTIONS
from clipsearch.cluster.ingress import Ingress
from clipsearch.cluster.router import RouterOptions
from encoder_service.settings import EncoderSettings

APP_NAME = "clipsearch"


@dataclass(frozen=True)
class ClusterConfig:
    #: Where each copy keeps its data directory (group-G/copy-R below it): a volume per node.
    data_root: str
    groups: int = 2
    copies: int = 2
    #: Custom resource a copy needs ("" places copies anywhere).
    copy_resource: str = "clipsearch_copy_{copy}"
    encoder: dict[str, Any] = field(default_factory=dict)  # EncoderSettings fields
    #: Encoder replicas: autoscaled between these on ongoing requests.
    encoder_min_replicas: int = 1
    encoder_max_replicas: int = 1
    #: Ongoing requests per encoder replica the autoscaler aims at.
    encoder_target_ongoing: int = 16
    encoder_cpus: float = 1.0
    #: 1 puts every encoder replica on its own GPU; 0 runs on CPU.
    encoder_gpus: float = 0.0
    #: Requests one replica takes at once: room for @batch-sized groups (Serve's default is 5).
    max_ongoing_requests: int = 64
    #: Pin the ingress to the head node (where the proxy runs), so losing a worker never takes it.
    ingress_on_head: bool = True
    read_timeout_s: float = 2.0
    write_timeout_s: float = 60.0
    down_s: float = 10.0

    def __post_init__(self) -> None:
        if self.groups < 1 or self.copies < 1:
            raise ValueError("groups and copies must be >= 1")
        if not 1 <= self.encoder_min_replicas <= self.encoder_max_replicas:
            raise ValueError("need 1 <= encoder_min_replicas <= encoder_max_replicas")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClusterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown cluster settings: {unknown}")
        return cls(**values)

    def resources(self, group: int, copy: int) -> dict[str, float]:
        if not self.copy_resource:
            return {}
        return {self.copy_resource.format(group=group, copy=copy): 0.01}


def build_app(config: ClusterConfig) -> Any:
    # serve.deployment(cls, ...) returns a Deployment, but ray annotates it as the decorator
    # factory that serve.deployment(...) returns, so mypy sees no .bind on it.
    encoder = serve.deployment(  # type: ignore[attr-defined]
        EncoderReplica,
        name="encoder",
        max_ongoing_requests=config.max_ongoing_requests,
        autoscaling_config={
            "min_replicas": config.encoder_min_replicas,
            "initial_replicas": config.encoder_min_replicas,
            "max_replicas": config.encoder_max_replicas,
            "target_ongoing_requests": config.encoder_target_ongoing,
        },
        ray_actor_options={"num_cpus": config.encoder_cpus, "num_gpus": config.encoder_gpus},
    ).bind(EncoderSettings(**config.encoder))
    copies = [
        [
            serve.deployment(  # type: ignore[attr-defined]
                ShardCopy,
                name=f"shard-g{g}-c{c}",
                num_replicas=1,
                max_ongoing_requests=config.max_ongoing_requests,
                ray_actor_options={"num_cpus": 0, "resources": config.resources(g, c)},
            ).bind(config.data_root, g, c)
            for c in range(config.copies)
        ]
        for g in range(config.groups)
    ]
    router = RouterOptions(config.read_timeout_s, config.write_timeout_s, config.down_s)
    return serve.deployment(  # type: ignore[attr-defined]
        Ingress,
        name="ingress",
        max_ongoing_requests=4 * config.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": 0,
            "resources": {"node:__internal_head__": 0.001} if config.ingress_on_head else {},
        },
    ).bind(encoder, copies, router)


def app_builder(args: dict[str, Any]) -> Any:
    """``import_path`` of the Serve config (``serve run``, KubeRay): args are ClusterConfig fields."""
    return build_app(ClusterConfig.from_dict(dict(args)))


def grpc_options(port: int) -> gRPCOptions:
    return gRPCOptions(port=port, grpc_servicer_functions=list(SERVICER_FUNCTIONS))


def deploy(config: ClusterConfig, *, grpc_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    """Starts Serve (one proxy, on the head node) on a connected Ray and runs the application."""
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": host, "port": http_port},
        grpc_options=grpc_options(grpc_port),
    )
    serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
