"""A server with ``--image-decode device`` (torchvision on the CPU here) over real gRPC: the CPU
path's vectors, the same refusals naming the input, per-item errors in streams."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from encoder_media import hostile_images, image_bytes
from encoder_rpc import embed, expected, image, serving, text
from image_variants import exif_rotated_jpeg, jpeg
from test_device_images import TORCHVISION_DEPRECATION, photo

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from encoder_service.settings import EncoderSettings

pytestmark = [
    pytest.mark.functional,
    pytest.mark.filterwarnings(TORCHVISION_DEPRECATION),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

HOSTILE = hostile_images(EncoderSettings().max_image_bytes)


@pytest.fixture(scope="module")
def device_server():
    from encoder_rpc import TINY
    from harness import ServerThread

    from encoder_service.server import create_server

    settings = EncoderSettings(**TINY, image_decode="device", decode_workers=2, max_wait_ms=10)
    with ServerThread(lambda: create_server(settings), name="encoder-device-decode") as thread:
        yield thread


@pytest.fixture(scope="module")
def device_stub(device_server):
    with grpc.insecure_channel(device_server.address) as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel), channel


def test_vectors_match_the_cpu_decoders(device_stub, device_server, reference_model) -> None:
    stub, _ = device_stub
    inputs = [
        image(jpeg(photo(256, 256), 90)),
        text("a red dress"),
        image(exif_rotated_jpeg(photo(240, 160), 8)),
        image(image_bytes("PNG")),
        image(jpeg(photo(100, 300).convert("L"), 80, progressive=True)),
    ]
    vectors, _ = embed(stub, inputs)
    cosines = (vectors * expected(reference_model, inputs)).sum(1)
    assert cosines.min() >= 0.9999, cosines
    assert device_server.server.core.image_decode == "device"
    paths = device_server.server.metrics.snapshot().decode_paths
    assert paths["device"] >= 3 and paths["cpu"] >= 1


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_images_are_refused_naming_them(device_stub, name: str) -> None:
    stub, channel = device_stub
    with pytest.raises(grpc.RpcError) as caught:
        embed(stub, [text("fine"), image(HOSTILE[name])])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert from_rpc_error(caught.value).field == "inputs[1].image"
    assert serving(channel)


def test_a_stream_fails_only_the_bad_item(device_stub) -> None:
    stub, _ = device_stub
    chunk = encoder_pb2.EmbedStreamRequest(
        chunk_id="c1",
        inputs=[
            image(jpeg(photo(64, 64), 90)),
            image(HOSTILE["truncated-jpeg"]),
            image(jpeg(photo(64, 64), 90)),
        ],
    )
    (response,) = list(stub.EmbedStream(iter([chunk]), timeout=30))
    kinds = [result.WhichOneof("outcome") for result in response.results]
    assert kinds == ["embedding", "error", "embedding"], kinds
    assert response.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_concurrent_callers_get_their_own_vectors(device_stub, reference_model) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stub, _ = device_stub
    datas = [jpeg(photo(128, 96, seed=seed), 90) for seed in range(16)]
    want = expected(reference_model, [image(d) for d in datas])
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda d: embed(stub, [image(d)])[0][0], datas))
    assert (np.stack(got) * want).sum(1).min() >= 0.9999
