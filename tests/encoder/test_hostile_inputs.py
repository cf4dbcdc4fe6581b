"""Hostile input over real gRPC: INVALID_ARGUMENT naming the input, the server unharmed.

Every case sits at index 1 behind a good input; the answer must name ``inputs[1]``, the
server must stay SERVING, and callers sending good inputs meanwhile must get exactly
the vectors they would get alone.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from encoder_media import colored_images, hostile_images
from encoder_rpc import embed, expected, image, serving, text

from clipsearch._calls import from_rpc_error
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from encoder_service.settings import EncoderSettings

IMAGES = hostile_images(EncoderSettings().max_image_bytes)
# The bombs make Pillow warn before our check refuses them; the refusal is what is tested.
pytestmark = [
    pytest.mark.functional,
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]
TEXTS = {
    "empty-text": "",
    "whitespace-text": " \t\n ",
    "megabyte-text": "lorem ipsum " * 90_000,
}


def refused(stub, inputs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        embed(stub, inputs)
    return caught.value


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hostile_image_is_invalid_argument_naming_it(stub, channel, name: str) -> None:
    error = refused(stub, [text("fine"), image(IMAGES[name])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert from_rpc_error(error).field == "inputs[1].image"
    assert error.details().startswith("inputs[1].image: ")
    assert serving(channel)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_hostile_text_is_invalid_argument_naming_it(stub, channel, name: str) -> None:
    error = refused(stub, [text("fine"), text(TEXTS[name])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert from_rpc_error(error).field == "inputs[1].text"
    assert serving(channel)


def test_an_input_with_nothing_set_is_invalid_argument(stub) -> None:
    error = refused(stub, [text("fine"), encoder_pb2.EmbedInput()])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(error).field == "inputs[1]"


def invalid_utf8_request() -> bytes:
    """An EmbedRequest on the wire whose inputs[1].text is not UTF-8 (no Python client can send it)."""
    placeholder = "\u00e9\u00e9"  # 4 bytes of valid UTF-8, swapped below for 4 invalid ones
    wire = encoder_pb2.EmbedRequest(
        inputs=[encoder_pb2.EmbedInput(text="fine"), encoder_pb2.EmbedInput(text=placeholder)]
    )
    raw = wire.SerializeToString()
    assert raw.count(placeholder.encode()) == 1
    return raw.replace(placeholder.encode(), b"\xff\xfe\xc3\x28")


def test_invalid_utf8_text_is_invalid_argument_naming_it(channel) -> None:
    call = channel.unary_unary(
        "/clipsearch.v1.EncoderService/Embed",
        request_serializer=lambda raw: raw,
        response_deserializer=encoder_pb2.EmbedResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(invalid_utf8_request(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).field == "inputs[1].text"
    assert "UTF-8" in caught.value.details()
    assert serving(channel)


def test_invalid_utf8_in_a_stream_fails_only_its_item(channel) -> None:
    call = channel.stream_stream(
        "/clipsearch.v1.EncoderService/EmbedStream",
        request_serializer=lambda raw: raw,
        response_deserializer=encoder_pb2.EmbedStreamResponse.FromString,
    )
    raw_chunk = encoder_pb2.EmbedStreamRequest(chunk_id="c0").SerializeToString() + _as_stream_inputs(
        invalid_utf8_request()
    )
    (response,) = list(call(iter([raw_chunk]), timeout=10))
    assert response.chunk_id == "c0"
    first, second = response.results
    assert first.WhichOneof("outcome") == "embedding"
    assert second.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert second.error.message.startswith("inputs[1].text: not valid UTF-8")


def _as_stream_inputs(embed_request: bytes) -> bytes:
    # EmbedRequest.inputs is field 1, EmbedStreamRequest.inputs field 2, both length-delimited:
    # the tag byte 0x0a becomes 0x12. Each input here is short, so lengths are one byte.
    out, i = bytearray(), 0
    while i < len(embed_request):
        assert embed_request[i] == 0x0A
        length = embed_request[i + 1]
        out += b"\x12" + embed_request[i + 1 : i + 2 + length]
        i += 2 + length
    return bytes(out)


def test_other_callers_are_unaffected_by_hostile_ones(stub, channel, reference_model) -> None:
    good_inputs = [[text(f"good caller {i}"), image(picture)] for i, picture in enumerate(colored_images(6))]
    wanted = [expected(reference_model, inputs) for inputs in good_inputs]
    failures: list[str] = []
    stop = threading.Event()

    def good_caller(n: int) -> int:
        calls = 0
        while not stop.is_set() or calls == 0:
            vectors, _ = embed(stub, good_inputs[n])
            if not np.allclose(vectors, wanted[n], atol=1e-5):
                failures.append(f"caller {n} got wrong vectors")
            calls += 1
        return calls

    hostile = [[text("x"), image(data)] for data in IMAGES.values()] + [
        [text("x"), text(t)] for t in TEXTS.values()
    ]
    with ThreadPoolExecutor(4) as pool:
        callers = [pool.submit(good_caller, n) for n in range(3)]
        for _ in range(2):
            for inputs in hostile:
                assert refused(stub, inputs).code() == grpc.StatusCode.INVALID_ARGUMENT
        stop.set()
        assert all(c.result() > 0 for c in callers)
    assert failures == []
    assert serving(channel)


def test_large_images_cost_what_the_model_can_use(start_encoder) -> None:
    """The issue: a 9000x9000 PNG just under Pillow's pixel limit took ~4 s of CPU to embed for a
    64 px model. The default limit fits the model ((32 x its 32 px)^2 = 1024x1024 for the tiny
    test model): a 4096x4096 PNG is refused at once naming the flag; the same JPEG is decoded at
    a reduced size (libjpeg's 1/8 here), and its vector is the picture's."""
    import io

    from PIL import Image

    from clipsearch.wire import vectors_from_protos

    thread = start_encoder()
    core = thread.server.core
    side = core.model.identity.image_size
    assert core.limits.image.max_pixels == (32 * side) ** 2 < 4096 * 4096
    decoded: list[tuple[int, int]] = []
    preprocess = core.model.preprocess_image

    def spy(picture):
        decoded.append(picture.size)
        return preprocess(picture)

    core.model.preprocess_image = spy
    gradient = np.linspace(0, 255, 4096, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(gradient, (4096, 1)),
            np.tile(gradient[:, None], (1, 4096)),
            np.full((4096, 4096), 90, np.uint8),
        ],
        -1,
    )
    picture = Image.fromarray(pixels, "RGB")

    def encoded(fmt: str, image_: Image.Image) -> bytes:
        out = io.BytesIO()
        image_.save(out, fmt, quality=95)
        return out.getvalue()

    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        error = from_rpc_error(refused(stub, [image(encoded("PNG", picture))]))
        assert error.field == "inputs[0].image" and "--max-image-pixels" in error.message
        assert decoded == [], "the PNG was decoded"
        big, small = (
            stub.Embed(encoder_pb2.EmbedRequest(inputs=[image(encoded("JPEG", p))]), timeout=60)
            for p in (picture, picture.resize((512, 512), Image.LANCZOS))
        )
    assert decoded == [(512, 512), (512, 512)], decoded  # the 4096x4096 JPEG decoded at 1/8
    vectors = [vectors_from_protos(r.embeddings)[0] for r in (big, small)]
    assert float(vectors[0] @ vectors[1]) > 0.99
