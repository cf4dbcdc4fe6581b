"""EmbedStream with acknowledged reads (issue 21 item 3): a stream that acknowledges what it
reads gets at most ``read_window`` chunks worked on beyond its acknowledgements, so a caller
that stops reading stops its stream's work there, whatever the transport buffers; an
encoder started with ``--require-stream-acks`` serves only such streams. The SDK's
``embed_stream`` acknowledges as its caller takes results."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from encoder_rpc import TINY, text

from clipsearch import EncoderClient
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc

pytestmark = pytest.mark.functional


def chunk(number: int, *, window: int = 0, read: int = 0) -> encoder_pb2.EmbedStreamRequest:
    return encoder_pb2.EmbedStreamRequest(
        chunk_id=str(number),
        inputs=[text(f"bulk {number} {j}") for j in range(4)],
        read_window=window,
        responses_read=read,
    )


def test_a_stream_that_stops_acknowledging_gets_only_its_window_of_work(start_encoder) -> None:
    thread = start_encoder(**TINY, require_stream_acks=True)
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        # Never reads and never acknowledges: chunks 0-2 are worked on, chunk 3 is refused.
        requests = [chunk(0, window=3), chunk(1), chunk(2), chunk(3), chunk(4)]
        responses, error = [], None
        try:
            for response in stub.EmbedStream(iter(requests), timeout=60):
                responses.append(response.chunk_id)
        except grpc.RpcError as exc:
            error = exc
        assert responses == ["0", "1", "2"]
        assert error is not None and error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "responses_read" in error.details() and "read_window is 3" in error.details()
        # Acknowledged as read, the same chunks all go through; an acknowledgement alone is fine.
        acked = [
            chunk(0, window=2),
            chunk(1),
            encoder_pb2.EmbedStreamRequest(responses_read=1),
            chunk(2, read=1),
            chunk(3, read=2),
        ]
        gate = _Paced(acked)
        got = [r.chunk_id for r in gate.run(stub)]
        assert got == ["0", "1", "2", "3"]


class _Paced:
    """Sends each message only once the responses it acknowledges have arrived."""

    def __init__(self, messages: list[encoder_pb2.EmbedStreamRequest]):
        self.messages = messages
        self.received = 0
        self.changed = threading.Condition()

    def requests(self):
        for message in self.messages:
            with self.changed:
                self.changed.wait_for(lambda m=message: self.received >= m.responses_read, timeout=30)
            yield message

    def run(self, stub) -> list[encoder_pb2.EmbedStreamResponse]:
        out = []
        for response in stub.EmbedStream(self.requests(), timeout=60):
            out.append(response)
            with self.changed:
                self.received += 1
                self.changed.notify_all()
        return out


def test_streams_without_acknowledgements_are_refused_when_required(start_encoder) -> None:
    thread = start_encoder(**TINY, require_stream_acks=True)
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.EmbedStream(iter([chunk(0), chunk(1)]), timeout=30))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "read_window" in caught.value.details()


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([chunk(0, window=65)], "read_window"),
        ([chunk(0, window=2, read=5)], "responses_read"),
    ],
)
def test_bad_acknowledgements_are_invalid_argument(start_encoder, messages, field) -> None:
    thread = start_encoder(**TINY)
    with grpc.insecure_channel(thread.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            list(encoder_pb2_grpc.EncoderServiceStub(channel).EmbedStream(iter(messages), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details()


def test_the_sdk_sends_only_its_window_beyond_what_its_caller_took(start_encoder) -> None:
    thread = start_encoder(**TINY, require_stream_acks=True)
    pulled = []

    def chunks():
        for number in range(50):
            pulled.append(number)
            yield [text(f"item {number} {j}") for j in range(3)]

    with EncoderClient(thread.address) as client:
        stream = client.embed_stream(chunks(), read_window=2)
        first = next(stream)
        assert len(first) == 3 and all(isinstance(v, np.ndarray) for v in first)
        time.sleep(1.0)  # the caller takes nothing more meanwhile
        assert len(pulled) <= 1 + 2 + 1, pulled  # taken + window (+ one the iterator holds)
        rest = list(stream)
        assert len(rest) == 49 and len(pulled) == 50
        expected = client.embed_texts([f"item 49 {j}" for j in range(3)])
        assert np.allclose(np.stack(rest[-1]), expected, atol=1e-5)


def test_older_clients_without_acknowledgements_still_work(stub) -> None:
    got = [r.chunk_id for r in stub.EmbedStream(iter([chunk(n) for n in range(6)]), timeout=60)]
    assert got == [str(n) for n in range(6)]
