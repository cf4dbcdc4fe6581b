"""The cluster's ingress answers every RPC of the contract, so a new RPC cannot be forgotten."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from clipsearch.cluster.ingress import Ingress
from clipsearch.cluster.servicer import ClusterIndexServicer
from clipsearch.v1 import encoder_pb2, index_pb2

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", [index_pb2.DESCRIPTOR.services_by_name["IndexService"]])
def test_every_index_rpc_is_routed(service) -> None:
    for method in service.methods:
        assert hasattr(Ingress, method.name), f"the Serve ingress lacks {method.name}"
        assert hasattr(ClusterIndexServicer, method.name), f"ClusterIndexServicer lacks {method.name}"


def test_every_encoder_rpc_is_routed() -> None:
    for method in encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].methods:
        assert hasattr(Ingress, method.name), f"the Serve ingress lacks {method.name}"
