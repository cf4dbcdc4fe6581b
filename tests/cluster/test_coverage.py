"""With one copy per shard group, losing a node is never a silent loss.

Searches report the coverage they were made from: below ``min_coverage`` (all groups
unless asked otherwise) they fail with UNAVAILABLE; at or above it they answer from the
groups that are left, exactly. Writes to the lost group fail loudly.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from clipsearch.v1 import index_pb2, index_pb2_grpc
from clipsearch.wire import vector_to_proto
from index_service.collection import shard_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

DIM, ITEMS, K = 16, 400, 5


def test_one_copy_per_group_reports_partial_coverage_never_silent_loss(cluster_factory):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((ITEMS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(ITEMS)]
    queries = vectors[:20]
    resources = [{"clipsearch_g0": 1}, {"clipsearch_g1": 1}]
    with (
        cluster_factory(
            groups=2,
            copies=1,
            worker_resources=resources,
            copy_resource="clipsearch_g{group}",
            write_timeout_s=5.0,
        ) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = index_pb2_grpc.IndexServiceStub(channel)
        config = index_pb2.CollectionConfig(name="c", dimension=DIM, num_shards=1)
        stub.CreateCollection(index_pb2.CreateCollectionRequest(config=config), timeout=60)
        items = [index_pb2.Item(id=i, vector=vector_to_proto(v)) for i, v in zip(ids, vectors, strict=True)]
        stub.Upsert(index_pb2.UpsertRequest(collection="c", items=items), timeout=60)

        def search(**options) -> index_pb2.SearchResponse:
            request = index_pb2.SearchRequest(
                collection="c", queries=[vector_to_proto(q) for q in queries], k=K, **options
            )
            return stub.Search(request, timeout=60)

        whole = search()
        assert (whole.coverage.shards_answered, whole.coverage.shards_asked) == (2, 2)
        assert [r.hits[0].id for r in whole.results] == ids[:20]

        running.kill_worker(1)

        with pytest.raises(grpc.RpcError) as refused:
            search()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "1 of 2 shard groups answered" in refused.value.details()

        partial = search(min_coverage=0.5)
        assert (partial.coverage.shards_answered, partial.coverage.shards_asked) == (1, 2)
        left = [i for i, item_id in enumerate(ids) if shard_of(item_id, 2) == 0]
        best = np.argsort(-(queries @ vectors[left].T), axis=1, kind="stable")[:, :K]
        assert [[h.id for h in r.hits] for r in partial.results] == [
            [ids[left[j]] for j in row] for row in best
        ]

        lost = next(i for i in ids if shard_of(i, 2) == 1)
        kept = next(i for i in ids if shard_of(i, 2) == 0)
        with pytest.raises(grpc.RpcError) as failed_write:
            stub.Upsert(
                index_pb2.UpsertRequest(
                    collection="c",
                    items=[
                        index_pb2.Item(id=kept, vector=vector_to_proto(vectors[0])),
                        index_pb2.Item(id=lost, vector=vector_to_proto(vectors[0])),
                    ],
                ),
                timeout=120,
            )
        assert failed_write.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "applied on shard groups [0]" in failed_write.value.details()
