"""The gRPC adapter of :class:`~encoder_service.core.EncoderCore`.

Requests of ``Embed`` and ``EmbedStream`` are parsed with *lenient* twins of their
messages, identical on the wire except that ``text`` and ``chunk_id`` are ``bytes``: a
proto3 ``string`` holding invalid UTF-8 would otherwise fail the parse before any code of
ours runs, and the caller would get a bare INTERNAL/UNKNOWN instead of INVALID_ARGUMENT
naming ``inputs[i].text``. The core checks UTF-8 per input. Reflection still serves the
real contract; responses use the real messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any, Protocol

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from clipsearch.errors import ClipsearchError, FailedPreconditionError, InvalidArgumentError, UnavailableError
from clipsearch.server.status import map_errors
from clipsearch.types import ModelInfo
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from clipsearch.wire import vector_to_proto, vectors_to_protos
from encoder_service.core import ImageInput, Input, TextInput

SERVICE_NAME = "clipsearch.v1.EncoderService"
#: Longest EmbedStream chunk_id (it is echoed in the chunk's response).
MAX_CHUNK_ID_BYTES = 256
#: Largest EmbedStreamRequest.read_window: chunks one acknowledging stream may have in flight.
MAX_READ_WINDOW = 64


def _lenient_messages() -> tuple[Any, Any]:
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="clipsearch/v1/encoder_lenient.proto", package="clipsearch.v1.lenient", syntax="proto3"
    )
    embed_input = proto.message_type.add(name="EmbedInput")
    embed_input.oneof_decl.add(name="content")
    embed_input.field.add(name="text", number=1, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL, oneof_index=0)
    embed_input.field.add(name="image", number=2, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL, oneof_index=0)
    inputs = {
        "type": f.TYPE_MESSAGE,
        "label": f.LABEL_REPEATED,
        "type_name": ".clipsearch.v1.lenient.EmbedInput",
    }
    proto.message_type.add(name="EmbedRequest").field.add(name="inputs", number=1, **inputs)
    stream_request = proto.message_type.add(name="EmbedStreamRequest")
    stream_request.field.add(name="chunk_id", number=1, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL)
    stream_request.field.add(name="inputs", number=2, **inputs)
    stream_request.field.add(name="read_window", number=3, type=f.TYPE_UINT32, label=f.LABEL_OPTIONAL)
    stream_request.field.add(name="responses_read", number=4, type=f.TYPE_UINT64, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("clipsearch.v1.lenient.EmbedRequest")),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("clipsearch.v1.lenient.EmbedStreamRequest")
        ),
    )


LenientEmbedRequest, LenientEmbedStreamRequest = _lenient_messages()


class _Malformed:
    """Stands for request bytes that are not the message at all; the handler refuses it."""

    def __init__(self, reason: str):
        self.reason = reason


def _parser(message_class: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return parse


def _inputs(message: Any) -> list[Input]:
    if isinstance(message, _Malformed):
        raise InvalidArgumentError(f"request is not a valid message: {message.reason}", field="inputs")
    inputs: list[Input] = []
    for item in message.inputs:
        which = item.WhichOneof("content")
        if which == "text":
            inputs.append(TextInput(item.text))
        elif which == "image":
            inputs.append(ImageInput(item.image))
        else:
            inputs.append(None)
    return inputs


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _result(outcome: np.ndarray | ClipsearchError) -> encoder_pb2.EmbedResult:
    if isinstance(outcome, ClipsearchError):
        return encoder_pb2.EmbedResult(
            error=encoder_pb2.ItemError(code=outcome.code.value, message=outcome.message)
        )
    return encoder_pb2.EmbedResult(embedding=vector_to_proto(outcome))


class ServicerCore(Protocol):
    """What the servicer needs of a core: :class:`~encoder_service.core.EncoderCore`, or
    :class:`~clipsearch.cluster.encoder_replica.RemoteEncoderCore` in the Serve ingress."""

    @property
    def identity(self) -> ModelInfo: ...

    async def embed(self, inputs: Sequence[Input], *, deadline: float | None = None) -> np.ndarray: ...

    async def embed_each(
        self, inputs: Sequence[Input], *, deadline: float | None = None
    ) -> list[np.ndarray | ClipsearchError]: ...


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    """``core`` is None until the model is loaded; calls before that get UNAVAILABLE."""

    def __init__(
        self, core: ServicerCore | None, *, stream_window: int = 4, require_stream_acks: bool = False
    ):
        self._core = core
        self.stream_window = stream_window
        #: Refuse EmbedStreams that do not acknowledge what they read (read_window 0).
        self.require_stream_acks = require_stream_acks
        #: Set by the server when it begins to stop: streams read no more chunks and end.
        self.draining: asyncio.Event | None = None

    @property
    def core(self) -> ServicerCore:
        if self._core is None:
            raise UnavailableError("the model is still loading", retry_after_s=1.0)
        return self._core

    @core.setter
    def core(self, core: ServicerCore) -> None:
        self._core = core

    @map_errors
    async def Embed(self, request: Any, context: grpc.aio.ServicerContext) -> encoder_pb2.EmbedResponse:
        vectors = await self.core.embed(_inputs(request), deadline=_deadline(context))
        return encoder_pb2.EmbedResponse(
            embeddings=vectors_to_protos(vectors), model_fingerprint=self.core.identity.fingerprint
        )

    @map_errors
    async def EmbedStream(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        """Chunks are worked on ``stream_window`` at a time and answered in order.

        A slot is taken when a chunk is read and given back only once its response has been
        written (handed to gRPC's flow control), so the chunks being worked on and the
        responses the transport has not taken are ``stream_window`` together: a caller that
        stops reading stops the work for its stream as soon as HTTP/2 flow control pushes
        back, and a fast sender is held back the same way. Stream work is bulk work in the
        batcher: it runs after interactive calls (encoder_service/batching.py).

        When the server stops, no further chunk is read; those read are answered, then the
        stream ends with UNAVAILABLE naming the last chunk answered (resend the rest).
        """
        deadline = _deadline(context)
        slots = asyncio.Semaphore(self.stream_window)
        pending: asyncio.Queue[asyncio.Future | None] = asyncio.Queue()
        cut_short = False
        credit: _ReadCredit | None = None  # set when the caller acknowledges what it reads
        written = 0

        async def read() -> None:
            nonlocal cut_short, credit
            try:
                iterator = request_iterator.__aiter__()
                first = True
                while True:
                    if credit is None:
                        await slots.acquire()
                    try:
                        chunk = await self._next_unless_draining(iterator)
                    except StopAsyncIteration:
                        return
                    if chunk is None:
                        cut_short = True
                        return
                    if first:
                        first = False
                        credit = self._credit_for(chunk)
                        if credit is not None:
                            slots.release()
                    if credit is not None and not credit.admit(chunk, written):
                        continue  # an acknowledgement alone
                    pending.put_nowait(asyncio.ensure_future(self._chunk(chunk, deadline)))
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        last = None
        try:
            while (task := await pending.get()) is not None:
                response = await task
                last = response.chunk_id
                written += 1  # before the write: the caller may acknowledge it at once
                yield response
                if credit is None:
                    slots.release()  # after the write: the transport took the response
            await reader
            if cut_short:
                after = f"after chunk {last!r}" if last is not None else "from the first chunk"
                raise UnavailableError(
                    f"the encoder is shutting down: send the chunks {after} again (to another replica)",
                    retry_after_s=1.0,
                )
        finally:
            reader.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    def _credit_for(self, first: Any) -> _ReadCredit | None:
        """The stream's read credit from its first message (None: it does not acknowledge)."""
        window = 0 if isinstance(first, _Malformed) else int(first.read_window)
        if window > MAX_READ_WINDOW:
            raise InvalidArgumentError(
                f"read_window: at most {MAX_READ_WINDOW} chunks, got {window}", field="read_window"
            )
        if window == 0 and self.require_stream_acks:
            raise FailedPreconditionError(
                "read_window: this encoder serves only EmbedStreams that acknowledge the responses "
                "they read (--require-stream-acks): set read_window on the first message and "
                "responses_read on the next (the clipsearch SDK does)",
                field="read_window",
            )
        return _ReadCredit(window) if window else None

    async def _next_unless_draining(self, iterator: Any) -> Any:
        """The next chunk; None once the server is stopping (even while waiting for the caller)."""
        draining = self.draining
        if draining is None:
            return await iterator.__anext__()
        if draining.is_set():
            return None
        reading = asyncio.ensure_future(iterator.__anext__())
        reading.add_done_callback(_retrieved)  # it may end (aborted) after the stream has
        stopping = asyncio.ensure_future(draining.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            reading.cancel()
            raise
        finally:
            stopping.cancel()
        if not reading.done():
            reading.cancel()
            return None
        return reading.result()

    async def _chunk(self, chunk: Any, deadline: float | None) -> encoder_pb2.EmbedStreamResponse:
        inputs = _inputs(chunk)
        if len(chunk.chunk_id) > MAX_CHUNK_ID_BYTES:  # echoed in the response
            raise InvalidArgumentError(f"chunk_id: at most {MAX_CHUNK_ID_BYTES} bytes", field="chunk_id")
        try:
            chunk_id = chunk.chunk_id.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError("chunk_id: not valid UTF-8", field="chunk_id") from None
        outcomes = await self.core.embed_each(inputs, deadline=deadline)
        return encoder_pb2.EmbedStreamResponse(
            chunk_id=chunk_id,
            results=[_result(outcome) for outcome in outcomes],
            model_fingerprint=self.core.identity.fingerprint,
        )

    @map_errors
    async def GetModelInfo(
        self, request: encoder_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.GetModelInfoResponse:
        return encoder_pb2.GetModelInfoResponse(model=encoder_pb2.ModelInfo(**asdict(self.core.identity)))


class _ReadCredit:
    """An acknowledging stream's bound: chunks are worked on only while fewer than ``window``
    are beyond the responses the caller says it has read. A caller that stops reading stops
    its stream's work after ``window`` chunks, whatever the transport buffers."""

    def __init__(self, window: int):
        self.window = window
        self.started = 0
        self.acknowledged = 0

    def admit(self, message: Any, written: int) -> bool:
        """Takes the message's acknowledgement; whether it is a chunk to work on (it may be
        an acknowledgement alone). A chunk beyond the window is refused: the caller broke
        the protocol (waiting would deadlock: its acknowledgements queue behind the chunk)."""
        if isinstance(message, _Malformed):
            return True  # refused as a malformed chunk, in its turn
        read = int(message.responses_read)
        if read > written:
            raise InvalidArgumentError(
                f"responses_read: {read} acknowledged, but {written} responses were sent",
                field="responses_read",
            )
        self.acknowledged = max(self.acknowledged, read)
        if not message.inputs and not message.chunk_id:
            return False
        if self.started - self.acknowledged >= self.window:
            raise FailedPreconditionError(
                f"chunk {self.started}: sent with {self.started - self.acknowledged} responses "
                f"unacknowledged, and read_window is {self.window}: send a chunk only after "
                "acknowledging enough responses (responses_read)",
                field="responses_read",
            )
        self.started += 1
        return True


def _retrieved(task: asyncio.Future) -> None:
    """Marks a task's outcome as seen (asyncio logs an exception nobody asked for)."""
    if not task.cancelled():
        task.exception()


def add_to_server(servicer: EncoderServicer, server: grpc.aio.Server) -> None:
    """Like the generated ``add_EncoderServiceServicer_to_server``, with the lenient parsers."""
    handlers = {
        "Embed": grpc.unary_unary_rpc_method_handler(
            servicer.Embed,
            request_deserializer=_parser(LenientEmbedRequest),
            response_serializer=encoder_pb2.EmbedResponse.SerializeToString,
        ),
        "EmbedStream": grpc.stream_stream_rpc_method_handler(
            servicer.EmbedStream,
            request_deserializer=_parser(LenientEmbedStreamRequest),
            response_serializer=encoder_pb2.EmbedStreamResponse.SerializeToString,
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo,
            request_deserializer=encoder_pb2.GetModelInfoRequest.FromString,
            response_serializer=encoder_pb2.GetModelInfoResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]
