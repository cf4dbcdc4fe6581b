"""Filtered search against a brute-force oracle over real gRPC, at low, medium and high
selectivity, for HNSW and a compressed index with re-ranking (index_service/planner.py).

The planner's thresholds are lowered so a few thousand vectors reach every strategy: the
low selectivity is answered exactly (the hits ARE the oracle's), the medium one by a widened
ANN search, the high one by the index as it is; ``explain`` says which.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from clipsearch.v1 import index_pb2, types_pb2
from clipsearch.wire import vector_to_proto

pytestmark = pytest.mark.functional

N, DIM, K = 4000, 32, 10
#: selectivity -> the strategy the lowered thresholds below must pick
CASES = {0.005: "exact", 0.15: "ann_widened", 0.95: "ann"}
PLANNER = {"plan_exact_items": 100, "plan_exact_read_items": 50, "plan_exact_fraction": 0.0}


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(19)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 40, N)] + 0.7 * rng.standard_normal((N, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, N, 20)] + 0.3 * rng.standard_normal((20, DIM)).astype(np.float32)
    return x, rng.random(N), q / np.linalg.norm(q, axis=1, keepdims=True)


def _load(stub, name: str, spec: str, x: np.ndarray, u: np.ndarray) -> None:
    config = index_pb2.CollectionConfig(name=name, dimension=DIM, index_spec=spec)
    stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config))
    for s in range(0, N, 1000):
        items = [
            index_pb2.Item(
                id=f"i{j}",
                vector=vector_to_proto(x[j]),
                metadata={"u": types_pb2.MetadataValue(number_value=u[j])},
            )
            for j in range(s, s + 1000)
        ]
        stub.Upsert(index_pb2.UpsertRequest(collection=name, items=items))
    deadline = time.monotonic() + 120
    while not all(s.trained for s in _info(stub, name).shards):  # trainable kinds train in the background
        assert time.monotonic() < deadline, "the index was not trained in 2 minutes"
        time.sleep(0.2)


def _info(stub, name: str) -> index_pb2.CollectionInfo:
    return stub.DescribeCollection(index_pb2.DescribeCollectionRequest(collection=name)).collection


def _search(
    stub, name: str, q: np.ndarray, selectivity: float
) -> tuple[list[list[int]], index_pb2.ShardPlan]:
    condition = index_pb2.FieldCondition(field="u", range=index_pb2.Range(lt=selectivity))
    request = index_pb2.SearchRequest(
        collection=name,
        queries=[vector_to_proto(v) for v in q],
        k=K,
        filter=index_pb2.Filter(condition=condition),
        explain=True,
    )
    reply = stub.Search(request)
    assert len(reply.plans) == 1
    return [[int(h.id[1:]) for h in r.hits] for r in reply.results], reply.plans[0]


def _oracle(x: np.ndarray, u: np.ndarray, q: np.ndarray, selectivity: float) -> list[list[int]]:
    scores = q @ x.T
    scores[:, u >= selectivity] = -np.inf
    return [list(np.argsort(-row, kind="stable")[: min(K, int((u < selectivity).sum()))]) for row in scores]


@pytest.mark.parametrize("spec", ["HNSW16", "IVF16,PQ16x4,Rerank10"])
def test_filtered_search_matches_the_oracle(server_with, spec: str) -> None:
    server = server_with(recall_sample_rate=0.0, **PLANNER)
    x, u, q = _data()
    _load(server.stub, "c", spec, x, u)
    for selectivity, strategy in CASES.items():
        found, plan = _search(server.stub, "c", q, selectivity)
        truth = _oracle(x, u, q, selectivity)
        assert plan.strategy == strategy, plan
        assert plan.selected == int((u < selectivity).sum()) and plan.total == N
        assert (
            plan.reranked == (0 if spec == "HNSW16" or strategy == "exact" else plan.reranked) and plan.reason
        )
        if strategy == "exact":
            assert found == truth
        recall = np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
        assert recall >= 0.9, (selectivity, recall, plan)
        for hits in found:  # every hit passes the filter
            assert all(u[i] < selectivity for i in hits)
    if "Rerank" in spec:
        _, plan = _search(server.stub, "c", q, 0.95)
        assert plan.reranked == 10 * K  # the spec's Rerank10


def test_no_explain_no_plans(server) -> None:
    x, _, q = _data()
    config = index_pb2.CollectionConfig(name="d", dimension=DIM)
    server.stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config))
    server.stub.Upsert(
        index_pb2.UpsertRequest(collection="d", items=[index_pb2.Item(id="a", vector=vector_to_proto(x[0]))])
    )
    reply = server.stub.Search(index_pb2.SearchRequest(collection="d", queries=[vector_to_proto(q[0])], k=1))
    assert [h.id for h in reply.results[0].hits] == ["a"] and not reply.plans
