"""Garbage on the wire and malformed images against both servers: no crash, no hang, still SERVING.

Every method path of both services gets raw bytes through a generic
``channel.unary_unary(path)`` (identity serializers): random bytes, valid requests
truncated or with bytes flipped, oversized length prefixes. Embed also gets the hostile
image corpus of tests/encoder plus mutations of a valid JPEG and PNG. Each call must end
with a status within the call's deadline (a DEADLINE_EXCEEDED is a hang), never
UNAVAILABLE (a crash); then health is SERVING and a valid call still works.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from harness import ServerThread
from reliability_support import report, size

from clipsearch.v1 import encoder_pb2, index_pb2, types_pb2
from clipsearch.wire import vector_to_proto

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoder"))
from encoder_media import hostile_images, image_bytes

pytestmark = pytest.mark.reliability

ENCODER_METHODS = ["Embed", "GetModelInfo"]
INDEX_METHODS = ["CreateCollection", "ListCollections", "DescribeCollection", "DropCollection"]
INDEX_METHODS += ["Upsert", "Delete", "Get", "Search"]
#: Codes a refused garbage call may get; UNAVAILABLE (crash) and DEADLINE_EXCEEDED (hang) are failures,
#: and so is UNKNOWN: bytes that are not the method's message are INVALID_ARGUMENT (grpc.aio's own
#: answer, UNKNOWN "DecodeError", is replaced by the server kit: clipsearch/server/calls.py).
REFUSALS = {"OK", "INVALID_ARGUMENT", "INTERNAL", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}
REFUSALS |= {"ALREADY_EXISTS", "OUT_OF_RANGE", "UNIMPLEMENTED"}


def outcome(exc: grpc.RpcError) -> str:
    return exc.code().name


def valid_requests() -> dict[str, bytes]:
    vector = vector_to_proto(np.ones(8, dtype=np.float32))
    config = index_pb2.CollectionConfig(name="fuzz", dimension=8, metric=index_pb2.METRIC_L2, num_shards=2)
    return {
        "Embed": encoder_pb2.EmbedRequest(
            inputs=[encoder_pb2.EmbedInput(text="a red shirt"), encoder_pb2.EmbedInput(image=image_bytes())]
        ).SerializeToString(),
        "GetModelInfo": encoder_pb2.GetModelInfoRequest().SerializeToString(),
        "CreateCollection": index_pb2.CreateCollectionRequest(
            config=config, exist_ok=True
        ).SerializeToString(),
        "ListCollections": index_pb2.ListCollectionsRequest().SerializeToString(),
        "DescribeCollection": index_pb2.DescribeCollectionRequest(collection="fuzz").SerializeToString(),
        "DropCollection": index_pb2.DropCollectionRequest(
            collection="gone", missing_ok=True
        ).SerializeToString(),
        "Upsert": index_pb2.UpsertRequest(
            collection="fuzz", items=[index_pb2.Item(id="a", vector=vector)]
        ).SerializeToString(),
        "Delete": index_pb2.DeleteRequest(collection="fuzz", ids=["zzz"]).SerializeToString(),
        "Get": index_pb2.GetRequest(collection="fuzz", ids=["a"], missing_ok=True).SerializeToString(),
        "Search": index_pb2.SearchRequest(collection="fuzz", queries=[vector], k=3).SerializeToString(),
    }


def mutations(rng: random.Random, valid: bytes, count: int) -> list[bytes]:
    out = [b"", b"\x00", b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 8, b"\x08" * 33]
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 512)))
        elif kind == 1 and valid:
            out.append(valid[: rng.randrange(len(valid))])
        elif valid:
            data = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(bytes(data) + (rng.randbytes(rng.randrange(8)) if kind == 3 else b""))
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    encoder_settings = EncoderSettings(model="clipsearch-tiny", pretrained="random", port=0, threads=1)
    index_settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("fuzz-index"), search_threads=1)
    with (
        ServerThread(lambda: create_encoder(encoder_settings), name="fuzz-encoder") as encoder,
        ServerThread(lambda: create_index(index_settings), name="fuzz-index") as index,
    ):
        yield {"EncoderService": encoder.address, "IndexService": index.address}


def fire(channel: grpc.Channel, path: str, payloads: list[bytes], outcomes: Counter, slowest: list) -> None:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    for payload in payloads:
        started = time.perf_counter()
        try:
            call(payload, timeout=20)
            outcomes["OK"] += 1
        except grpc.RpcError as exc:
            outcomes[outcome(exc)] += 1
        slowest[0] = max(slowest[0], time.perf_counter() - started)


def test_garbage_messages_on_every_method(servers) -> None:
    rng = random.Random(11)
    valid = valid_requests()
    per_method = size(60, 1500)
    outcomes: Counter = Counter()
    slowest = [0.0]
    for service, methods in (("EncoderService", ENCODER_METHODS), ("IndexService", INDEX_METHODS)):
        with grpc.insecure_channel(servers[service]) as channel:
            for method in methods:
                payloads = mutations(rng, valid[method], per_method)
                fire(channel, f"/clipsearch.v1.{service}/{method}", payloads, outcomes, slowest)
    # The streaming method: a stream of garbage messages.
    with grpc.insecure_channel(servers["EncoderService"]) as channel:
        stream = channel.stream_stream("/clipsearch.v1.EncoderService/EmbedStream")
        for _ in range(size(10, 200)):
            try:
                list(stream(iter(mutations(rng, valid["Embed"], 5)), timeout=20))
                outcomes["OK"] += 1
            except grpc.RpcError as exc:
                outcomes[outcome(exc)] += 1
    assert_still_serving(servers)
    report("fuzz_wire", calls=sum(outcomes.values()), outcomes=dict(outcomes), slowest_s=round(slowest[0], 2))
    assert set(outcomes) <= REFUSALS, outcomes


def test_malformed_images(servers) -> None:
    rng = random.Random(12)
    corpus = list(hostile_images(16 * 1024 * 1024).values())
    for fmt in ("JPEG", "PNG"):
        good = image_bytes(fmt, size=(64, 64))
        corpus += mutations(rng, good, size(40, 1000))
    outcomes: Counter = Counter()
    slowest = [0.0]
    requests = [
        encoder_pb2.EmbedRequest(inputs=[encoder_pb2.EmbedInput(image=data)]).SerializeToString()
        for data in corpus
    ]
    with grpc.insecure_channel(servers["EncoderService"]) as channel:
        fire(channel, "/clipsearch.v1.EncoderService/Embed", requests, outcomes, slowest)
    assert_still_serving(servers)
    report("fuzz_images", images=len(corpus), outcomes=dict(outcomes), slowest_s=round(slowest[0], 2))
    assert set(outcomes) <= {"OK", "INVALID_ARGUMENT"}, outcomes


def assert_still_serving(servers) -> None:
    from clipsearch import EncoderClient, IndexClient
    from clipsearch.health import wait_until_serving

    for address in servers.values():
        wait_until_serving(address, timeout_s=5)
    with EncoderClient(servers["EncoderService"]) as encoder:
        assert encoder.embed_texts(["still here"]).shape[0] == 1
    with IndexClient(servers["IndexService"]) as index:
        index.list_collections()


def test_undecodable_requests_are_invalid_argument(servers) -> None:
    """Garbage bytes, and a filter nested past protobuf's recursion limit, on methods of both
    servers: INVALID_ARGUMENT naming the request (main answered UNKNOWN "DecodeError")."""
    from clipsearch._calls import from_rpc_error

    condition = index_pb2.Filter(
        condition=index_pb2.FieldCondition(field="color", equals=types_pb2.MetadataValue(string_value="red"))
    )
    deep = condition.SerializeToString()
    for _ in range(150):  # by hand: protobuf refuses to serialize past its depth limit too
        deep = b"\x22" + _varint(len(deep)) + deep  # Filter.negate = 4
    search = index_pb2.SearchRequest(
        collection="fuzz", queries=[vector_to_proto(np.ones(8, np.float32))], k=1
    )
    nested = search.SerializeToString() + b"\x2a" + _varint(len(deep)) + deep  # SearchRequest.filter = 5
    cases = [
        ("IndexService", "Search", nested),
        ("IndexService", "Upsert", b"\xff" * 64),
        ("IndexService", "CreateCollection", b"\x0a\xff\xff\xff\xff\x0f garbage"),
        ("EncoderService", "GetModelInfo", b"\x08" * 33),
    ]
    for service, method, payload in cases:
        with grpc.insecure_channel(servers[service]) as channel:
            call = channel.unary_unary(f"/clipsearch.v1.{service}/{method}")
            with pytest.raises(grpc.RpcError) as caught:
                call(payload, timeout=20)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value.details())
        error = from_rpc_error(caught.value)
        assert error.field == "request" and method in error.message, error
    assert_still_serving(servers)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
