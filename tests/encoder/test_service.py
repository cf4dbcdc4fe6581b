"""Every RPC of the encoder over real gRPC on loopback, checked against in-process open_clip."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import open_clip
import pytest
import torch
from encoder_media import colored_images, image_bytes
from encoder_rpc import SERVICE, embed, expected, image, serving, text
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from encoder_service.images import ImageLimits, decode_image
from encoder_service.model import load_model

pytestmark = pytest.mark.functional


def test_get_model_info_describes_the_loaded_model(stub, reference_model) -> None:
    info = stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=10).model
    assert (info.name, info.pretrained) == ("clipsearch-tiny", "random")
    assert (info.embedding_dim, info.image_size, info.context_length) == (64, 32, 77)
    assert (info.device, info.dtype) == ("cpu", "float32")
    assert info.fingerprint == reference_model.identity.fingerprint


def test_embed_returns_normalized_vectors_in_order_equal_to_open_clip(stub, reference_model) -> None:
    inputs = [
        text("a red dress"),
        image(image_bytes("JPEG")),
        text("blue sneakers"),
        image(image_bytes("WEBP")),
    ]
    vectors, fingerprint = embed(stub, inputs)
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, expected(reference_model, inputs), atol=1e-5)
    assert fingerprint == reference_model.identity.fingerprint


def test_an_empty_request_gets_an_empty_answer(stub) -> None:
    response = stub.Embed(encoder_pb2.EmbedRequest(), timeout=10)
    assert len(response.embeddings) == 0
    assert response.model_fingerprint.startswith("sha256:")


def test_long_text_is_truncated_not_refused(stub) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    vectors, _ = embed(stub, [text(words + " red"), text(words + " blue")])
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_concurrent_callers_each_get_their_own_vectors_in_order(stub, reference_model) -> None:
    rng = random.Random(5)
    pictures = colored_images(12)
    requests = []
    for r in range(48):
        inputs = []
        for j in range(rng.randint(1, 5)):
            inputs.append(
                text(f"request {r} item {j}") if rng.random() < 0.5 else image(rng.choice(pictures))
            )
        requests.append(inputs)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda inputs: embed(stub, inputs)[0], requests))
    for inputs, vectors in zip(requests, results, strict=True):
        np.testing.assert_allclose(vectors, expected(reference_model, inputs), atol=1e-5)


def test_concurrent_load_forms_batches_larger_than_one(start_encoder, gate_of) -> None:
    """Single-image calls from many threads share a batch. The model is held while they queue,
    so the batches that form do not depend on how busy the machine is."""
    thread = start_encoder(max_batch_size=32, decode_workers=2)
    gate = gate_of(thread)
    pictures = colored_images(8)
    with grpc.insecure_channel(thread.address) as channel, ThreadPoolExecutor(16) as pool:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = pool.submit(embed, stub, [image(pictures[0])])
        assert gate.entered.wait(30)
        rest = [pool.submit(embed, stub, [image(pictures[i % 8])]) for i in range(1, 16)]
        deadline = time.monotonic() + 30
        while thread.server.core.batcher.queue_depth("image") < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.open()
        for future in [first, *rest]:
            assert future.result()[0].shape == (1, 64)
    assert gate.batches == [("image", 1), ("image", 15)]
    assert thread.server.metrics.snapshot().requests == 16


def test_health_is_serving_for_the_server_and_the_service(channel) -> None:
    assert serving(channel)
    assert serving(channel, SERVICE)


def test_reflection_lists_the_services(channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_reflection_can_be_turned_off(start_encoder) -> None:
    thread = start_encoder(no_reflection=True)
    with grpc.insecure_channel(thread.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert serving(channel, SERVICE)


def chunk(chunk_id: str, inputs) -> encoder_pb2.EmbedStreamRequest:
    return encoder_pb2.EmbedStreamRequest(chunk_id=chunk_id, inputs=inputs)


def test_embed_stream_answers_every_chunk_in_order_with_per_item_errors(stub, reference_model) -> None:
    pictures = colored_images(5)
    chunks = []
    for c in range(30):
        inputs = [text(f"chunk {c}"), image(pictures[c % 5])]
        if c % 7 == 3:
            inputs.insert(1, image(b"GIF89a-not-allowed"))
        if c % 11 == 5:
            inputs.append(text(""))
        chunks.append(chunk(f"c{c}", inputs))
    responses = list(stub.EmbedStream(iter(chunks), timeout=60))
    assert [r.chunk_id for r in responses] == [c.chunk_id for c in chunks]
    for sent, got in zip(chunks, responses, strict=True):
        assert len(got.results) == len(sent.inputs)
        assert got.model_fingerprint == reference_model.identity.fingerprint
        for i, (item, result) in enumerate(zip(sent.inputs, got.results, strict=True)):
            bad = item.image.startswith(b"GIF") or (item.WhichOneof("content") == "text" and not item.text)
            if bad:
                assert result.WhichOneof("outcome") == "error"
                assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
                assert result.error.message.startswith(f"inputs[{i}].")
            else:
                vector = np.frombuffer(result.embedding.float32_le, "<f4")
                np.testing.assert_allclose(vector, expected(reference_model, [item])[0], atol=1e-5)


def test_a_stream_chunk_whose_every_image_is_corrupt_reports_each(stub) -> None:
    """Every image passes the cheap checks and fails to decode: each input gets its error, and the
    stream goes on (it was INTERNAL for the whole stream: the batcher was given nothing to run)."""
    corrupt = b"\xff\xd8\xff garbage"
    chunks = [chunk("bad", [image(corrupt), image(corrupt)]), chunk("fine", [text("a hat")])]
    responses = list(stub.EmbedStream(iter(chunks), timeout=60))
    assert [r.chunk_id for r in responses] == ["bad", "fine"]
    codes = [r.error.code for r in responses[0].results]
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 2
    assert responses[1].results[0].WhichOneof("outcome") == "embedding"


def test_embed_stream_reads_only_a_window_of_chunks_ahead(start_encoder, gate_of) -> None:
    thread = start_encoder(stream_window=2)
    gate = gate_of(thread)
    picture = image_bytes("PNG")
    sent = []

    def requests():
        for c in range(40):
            sent.append(c)
            yield chunk(str(c), [image(picture)])

    with grpc.insecure_channel(thread.address) as channel:
        responses = encoder_pb2_grpc.EncoderServiceStub(channel).EmbedStream(requests(), timeout=60)
        assert gate.entered.wait(30)
        # The model is held: the server takes its window of chunks (however long a busy
        # machine needs to), and no more however long we wait.
        deadline = time.monotonic() + 30
        while thread.server.metrics.snapshot().requests < 2 and time.monotonic() < deadline:
            thread.run(_sleep(0.02))
        thread.run(_sleep(0.3))
        assert thread.server.metrics.snapshot().requests == 2
        gate.open()
        assert [r.chunk_id for r in responses] == [str(c) for c in range(40)]
    assert len(sent) == 40


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_metrics_are_per_server_and_served_over_http(start_encoder) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    thread = start_encoder(metrics_port=port)
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        embed(stub, [text("one"), text("two"), image(image_bytes("PNG"))])
    snapshot = thread.server.metrics.snapshot()
    assert snapshot.requests == 1
    assert (snapshot.items["text"], snapshot.items["image"]) == (2, 1)
    assert snapshot.items_in_batches("text") == 2 and snapshot.items_in_batches("image") == 1
    assert snapshot.queue_seconds["text"] >= 0 and snapshot.model_seconds["image"] > 0
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'clipsearch_encoder_items_total{kind="text"} 2.0' in page
    assert 'clipsearch_encoder_batches_total{kind="image"} 1.0' in page
    assert "clipsearch_encoder_batch_size_bucket" in page
    assert (
        "clipsearch_encoder_queue_seconds_bucket" in page
        and "clipsearch_encoder_model_seconds_bucket" in page
    )
    assert 'clipsearch_encoder_queue_depth{kind="text"}' in page
    assert "clipsearch_encoder_admitted_items 0.0" in page
    assert 'method="/clipsearch.v1.EncoderService/Embed"' in page


def test_a_message_over_the_size_limit_is_refused_clearly(start_encoder) -> None:
    thread = start_encoder(max_message_bytes=64 * 1024)
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            embed(stub, [image(b"\xff\xd8\xff" + bytes(100 * 1024))])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in caught.value.details()
        assert serving(channel)
        assert embed(stub, [text("still fine")])[0].shape == (1, 64)


def test_from_rpc_error_sees_the_field(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        embed(stub, [text("ok"), text("   ")])
    error = from_rpc_error(caught.value)
    assert error.field == "inputs[1].text"


def test_a_checkpoint_served_over_grpc_gives_open_clip_vectors(
    checkpoints: tuple[Path, Path], start_encoder
) -> None:
    path = checkpoints[1]
    thread = start_encoder(pretrained=str(path))
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        info = stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=10).model
        assert (info.name, info.pretrained) == ("clipsearch-tiny", "tiny-b.pt")
        vectors, fingerprint = embed(stub, [text("a dotted yellow scarf"), image(image_bytes("PNG"))])
    assert fingerprint == info.fingerprint == load_model("clipsearch-tiny", str(path)).identity.fingerprint
    reference, _, preprocess = open_clip.create_model_and_transforms("clipsearch-tiny", pretrained=str(path))
    reference.eval()
    pixels = preprocess(decode_image(image_bytes("PNG"), ImageLimits())).unsqueeze(0)
    with torch.no_grad():
        tokens = open_clip.get_tokenizer("clipsearch-tiny")(["a dotted yellow scarf"])
        want_text = reference.encode_text(tokens, normalize=True).numpy()
        want_image = reference.encode_image(pixels, normalize=True).numpy()
    np.testing.assert_allclose(vectors, np.concatenate([want_text, want_image]), atol=1e-5)


def test_a_stream_chunk_id_is_bounded(stub) -> None:
    """chunk_id is echoed in every response: at most 256 bytes."""
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.EmbedStream(iter([chunk("c" * 257, [text("a hat")])]), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).field == "chunk_id"
