"""A stand-in EncoderService for testing the shared server plumbing without a model."""

from __future__ import annotations

import asyncio
import threading

from clipsearch.errors import InvalidArgumentError, ResourceExhaustedError
from clipsearch.request_context import current_request_id
from clipsearch.server.status import map_errors
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from clipsearch.wire import vector_to_proto


class StandInEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    #: Set when a "slow" call is inside the handler (tests wait on it instead of sleeping).
    slow_entered = threading.Event()

    @map_errors
    async def Embed(self, request, context):
        text = request.inputs[0].text if request.inputs else ""
        if not text:
            raise InvalidArgumentError("inputs[0].text: empty text", field="inputs[0].text")
        if text == "busy":
            raise ResourceExhaustedError("queue full", retry_after_s=0.5)
        if text == "crash":
            raise RuntimeError("secret internal detail")
        if text == "slow":
            self.slow_entered.set()
            await asyncio.sleep(1.5)
        if text == "whoami":
            # Echo the request id the server saw, so tests can follow it.
            return encoder_pb2.EmbedResponse(
                embeddings=[vector_to_proto([1.0, 0.0])], model_fingerprint=current_request_id.get() or ""
            )
        return encoder_pb2.EmbedResponse(embeddings=[vector_to_proto([1.0, 0.0])], model_fingerprint="fp")

    @map_errors
    async def EmbedStream(self, request_iterator, context):
        async for chunk in request_iterator:
            if chunk.chunk_id == "bad":
                raise InvalidArgumentError("chunk_id: bad", field="chunk_id")
            yield encoder_pb2.EmbedStreamResponse(chunk_id=chunk.chunk_id)
