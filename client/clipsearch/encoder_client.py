"""Synchronous client of ``clipsearch.v1.EncoderService``."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence

import grpc
import numpy as np

from clipsearch._calls import ServiceClient, chunks, translate_errors
from clipsearch.channel import DEFAULT_ENCODER_ADDRESS, ENCODER_ENV, ChannelOptions
from clipsearch.errors import ClipsearchError, StatusCode, error_for, renumbered
from clipsearch.images import ImageInput, image_bytes
from clipsearch.types import ModelInfo
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from clipsearch.wire import vector_from_proto, vectors_from_protos

#: Chunks an EmbedStream sends beyond the responses its caller has taken (the server's
#: default --stream-window; at most 64, EmbedStreamRequest.read_window).
STREAM_READ_WINDOW = 4


class EncoderClient(ServiceClient):
    """Embeds texts and images. Returns L2-normalized float32 arrays of shape (n, dim).

    ``address`` defaults to ``$CLIPSEARCH_ENCODER`` or 127.0.0.1:50051. Large inputs
    are sent in requests of ``batch_size`` items; the server batches across callers.
    """

    ADDRESS_ENV, DEFAULT_ADDRESS = ENCODER_ENV, DEFAULT_ENCODER_ADDRESS
    SERVICE = ("encoder", "clipsearch.v1.EncoderService")

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout_s: float = 60.0,
        batch_size: int = 64,
        options: ChannelOptions | None = None,
        channel: grpc.Channel | None = None,
    ):
        super().__init__(address, timeout_s=timeout_s, options=options, channel=channel)
        self.batch_size = batch_size
        self._stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)
        self.last_fingerprint = ""

    def model_info(self, *, timeout_s: float | None = None) -> ModelInfo:
        with translate_errors(self):
            response = self._stub.GetModelInfo(
                encoder_pb2.GetModelInfoRequest(), timeout=timeout_s or self.timeout_s
            )
        return ModelInfo.from_proto(response.model)

    def embed_texts(self, texts: Sequence[str], *, timeout_s: float | None = None) -> np.ndarray:
        return self.embed(text_inputs(texts), timeout_s=timeout_s)

    def embed_images(self, images: Sequence[ImageInput], *, timeout_s: float | None = None) -> np.ndarray:
        return self.embed(image_inputs(images), timeout_s=timeout_s)

    def embed_stream(
        self,
        chunks: Iterable[Sequence[encoder_pb2.EmbedInput]],
        *,
        timeout_s: float | None = None,
        read_window: int = STREAM_READ_WINDOW,
    ) -> Iterator[list[np.ndarray | ClipsearchError]]:
        """Bulk encoding over one flow-controlled ``EmbedStream``.

        Yields, per chunk and in order, one vector or one error per input: a bad input
        fails only itself. ``chunks`` is consumed as the server makes room, so a large
        catalog never sits in memory. No deadline unless ``timeout_s`` is given (a bulk
        stream lasts as long as the catalog). The stream acknowledges what the caller has
        taken from this iterator: at most ``read_window`` chunks are sent (and worked on)
        beyond it, so a caller that stops reading stops the server's work for it too.
        """
        reads = ReadCredit(read_window)
        requests = stream_requests(chunks, reads)
        # The call starts here, not at the first next(): gRPC's thread starts pulling
        # `chunks` at once, which a caller may be waiting on.
        with translate_errors(self):
            responses = self._stub.EmbedStream(requests, timeout=timeout_s)
        return self._outcomes(responses, reads)

    def _outcomes(self, responses: Iterable[encoder_pb2.EmbedStreamResponse], reads: ReadCredit):
        try:
            with translate_errors(self):
                for response in responses:
                    self.last_fingerprint = response.model_fingerprint
                    outcomes = [
                        outcome_from_proto(result, f"inputs[{i}]")
                        for i, result in enumerate(response.results)
                    ]
                    reads.taken()
                    yield outcomes
        finally:
            reads.close()

    def embed(
        self, inputs: Sequence[encoder_pb2.EmbedInput], *, timeout_s: float | None = None
    ) -> np.ndarray:
        """Embeds prepared inputs in order; INVALID_ARGUMENT names ``inputs[i]`` of the whole list."""
        parts: list[np.ndarray] = []
        for offset, request in embed_requests(inputs, self.batch_size):
            try:
                with translate_errors(self):
                    response = self._stub.Embed(request, timeout=timeout_s or self.timeout_s)
            except ClipsearchError as error:  # inputs[i] of this request -> of the whole list
                raise renumbered(error, "inputs", offset.__add__) from None
            self.last_fingerprint = response.model_fingerprint
            parts.append(vectors_from_protos(response.embeddings, field="embeddings"))
        return concatenate(parts)


# -- request building and response parsing (also used by the generated clipsearch.aio) --------


def outcome_from_proto(result: encoder_pb2.EmbedResult, field: str) -> np.ndarray | ClipsearchError:
    if result.WhichOneof("outcome") == "embedding":
        return vector_from_proto(result.embedding, field=field)
    return error_for(StatusCode.of(result.error.code), result.error.message, field=field)


class ReadCredit:
    """How many responses the caller has taken, and room for the next chunk: the request
    side waits while ``window`` chunks are beyond them (the stream's end releases it)."""

    def __init__(self, window: int):
        if not 1 <= window <= 64:
            raise ValueError(f"read_window must be in [1, 64], got {window}")
        self.window = window
        self.read = 0
        self.closed = False
        self._changed = threading.Condition()

    def taken(self) -> None:
        with self._changed:
            self.read += 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for_room(self, sent: int) -> int | None:
        """Responses read once chunk number ``sent`` may go; None once the stream ended."""
        with self._changed:
            self._changed.wait_for(lambda: self.closed or sent - self.read < self.window)
            return None if self.closed else self.read


def stream_requests(
    chunks: Iterable[Sequence[encoder_pb2.EmbedInput]], reads: ReadCredit
) -> Iterator[encoder_pb2.EmbedStreamRequest]:
    """One ``EmbedStream`` message per chunk, numbered, each sent once there is room in the
    read window and carrying how many responses the caller has taken."""
    for number, chunk in enumerate(chunks):
        read = reads.wait_for_room(number)
        if read is None:
            return
        yield stream_request(number, chunk, read, reads.window)


def stream_request(
    number: int, chunk: Sequence[encoder_pb2.EmbedInput], read: int, window: int
) -> encoder_pb2.EmbedStreamRequest:
    return encoder_pb2.EmbedStreamRequest(
        chunk_id=str(number),
        inputs=list(chunk),
        read_window=window if number == 0 else 0,
        responses_read=read,
    )


def text_inputs(texts: Sequence[str]) -> list[encoder_pb2.EmbedInput]:
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a sequence of strings; wrap a single text in a list")
    return [encoder_pb2.EmbedInput(text=t) for t in texts]


def image_inputs(images: Sequence[ImageInput]) -> list[encoder_pb2.EmbedInput]:
    return [encoder_pb2.EmbedInput(image=image_bytes(i)) for i in images]


def embed_requests(
    inputs: Sequence[encoder_pb2.EmbedInput], batch_size: int
) -> Iterator[tuple[int, encoder_pb2.EmbedRequest]]:
    """(offset of the first input, request) pairs of at most ``batch_size`` inputs."""
    for piece in chunks(len(inputs), batch_size):
        yield piece.start, encoder_pb2.EmbedRequest(inputs=inputs[piece])


def concatenate(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
