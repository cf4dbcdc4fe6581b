"""The query-embedding cache over real gRPC: repeated Embed texts skip the model, same vectors."""

from __future__ import annotations

import numpy as np
import pytest
from encoder_media import image_bytes
from encoder_rpc import embed, expected, image, text

from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc

pytestmark = pytest.mark.functional


def stub_of(thread) -> encoder_pb2_grpc.EncoderServiceStub:
    import grpc

    channel = grpc.insecure_channel(thread.address)
    return encoder_pb2_grpc.EncoderServiceStub(channel)


def counts(thread) -> tuple[int, int]:
    snapshot = thread.server.metrics.snapshot()
    return snapshot.query_cache_hits, snapshot.query_cache_misses


def test_a_repeated_text_is_answered_from_the_cache_with_the_same_vector(
    start_encoder, gate_of, reference_model
) -> None:
    thread = start_encoder(decode_workers=1)
    stub = stub_of(thread)
    first, fingerprint = embed(stub, [text("a red dress"), text("blue sneakers")])
    assert counts(thread) == (0, 2)
    np.testing.assert_allclose(
        first, expected(reference_model, [text("a red dress"), text("blue sneakers")]), atol=1e-5
    )
    gate = gate_of(thread)  # the model is held from now on: only the cache can answer
    again, again_fingerprint = embed(stub, [text("blue sneakers"), text("A  Red Dress")])
    assert gate.batches == []
    np.testing.assert_array_equal(again, first[::-1])
    assert again_fingerprint == fingerprint
    assert counts(thread) == (2, 2)
    gate.open()


def test_a_call_mixing_hits_misses_and_images_keeps_input_order(start_encoder, reference_model) -> None:
    thread = start_encoder()
    stub = stub_of(thread)
    embed(stub, [text("a red dress")])
    inputs = [text("green hat"), text("a red dress"), image(image_bytes("JPEG")), text("a red dress")]
    vectors, _ = embed(stub, inputs)
    np.testing.assert_allclose(vectors, expected(reference_model, inputs), atol=1e-5)
    assert counts(thread) == (2, 2)


def test_streams_do_not_use_the_cache(start_encoder) -> None:
    thread = start_encoder()
    stub = stub_of(thread)
    embed(stub, [text("a red dress")])
    chunk = encoder_pb2.EmbedStreamRequest(chunk_id="c", inputs=[text("a red dress")])
    responses = list(stub.EmbedStream(iter([chunk]), timeout=30))
    assert len(responses[0].results) == 1
    assert counts(thread) == (0, 1)


def test_the_cache_can_be_turned_off(start_encoder, gate_of) -> None:
    thread = start_encoder(query_cache_mib=0)
    assert thread.server.core.query_cache is None
    stub = stub_of(thread)
    first, _ = embed(stub, [text("a red dress")])
    second, _ = embed(stub, [text("a red dress")])
    np.testing.assert_allclose(first, second, atol=1e-6)
    assert counts(thread) == (0, 0)


def test_a_new_model_fingerprint_misses(start_encoder, checkpoints) -> None:
    """Vectors of one model are never served for another: the key holds the fingerprint."""
    thread = start_encoder(pretrained=str(checkpoints[0]))
    stub = stub_of(thread)
    core = thread.server.core
    _, fingerprint = embed(stub, [text("a red dress")])
    hits_before = counts(thread)[0]
    embed(stub, [text("a red dress")])
    assert counts(thread)[0] == hits_before + 1
    cache = core.query_cache
    # The same cache behind another model: the stored vector is not found.
    from encoder_service.model import load_model

    other = load_model("clipsearch-tiny", str(checkpoints[1]))
    assert other.identity.fingerprint != fingerprint
    assert cache.get(other.identity.fingerprint, "a red dress") is None
    assert cache.get(fingerprint, "a red dress") is not None


def test_the_hit_ratio_is_exported_to_prometheus(start_encoder) -> None:
    from prometheus_client import generate_latest

    thread = start_encoder()
    stub = stub_of(thread)
    for _ in range(3):
        embed(stub, [text("a red dress")])
    body = generate_latest(thread.server.metrics_registry).decode()
    assert 'clipsearch_encoder_query_cache_lookups_total{result="hit"} 2.0' in body
    assert 'clipsearch_encoder_query_cache_lookups_total{result="miss"} 1.0' in body
    ratio = next(
        line for line in body.splitlines() if line.startswith("clipsearch_encoder_query_cache_hit_ratio ")
    )
    assert float(ratio.split()[1]) == pytest.approx(2 / 3)
