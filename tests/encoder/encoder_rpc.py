"""Helpers for the encoder tests: calls over gRPC, in-process references, a gate on the model."""

from __future__ import annotations

import threading

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import ServerThread

from clipsearch.v1 import encoder_pb2
from clipsearch.wire import vectors_from_protos
from encoder_service.images import ImageLimits, decode_image

SERVICE = "clipsearch.v1.EncoderService"
#: Settings of every test server: the tiny config with (explicitly) random weights, any free port.
TINY = {"model": "clipsearch-tiny", "pretrained": "random", "port": 0}


def text(value: str) -> encoder_pb2.EmbedInput:
    return encoder_pb2.EmbedInput(text=value)


def image(data: bytes) -> encoder_pb2.EmbedInput:
    return encoder_pb2.EmbedInput(image=data)


def embed(stub, inputs, **kwargs) -> tuple[np.ndarray, str]:
    response = stub.Embed(encoder_pb2.EmbedRequest(inputs=inputs), timeout=30, **kwargs)
    return vectors_from_protos(response.embeddings), response.model_fingerprint


def expected(reference_model, inputs) -> np.ndarray:
    """What in-process open_clip gives for these inputs, one by one."""
    rows = []
    for item in inputs:
        if item.WhichOneof("content") == "text":
            rows.append(reference_model.encode_texts([reference_model.tokenize([item.text])[0]])[0])
        else:
            pixels = reference_model.preprocess_image(decode_image(item.image, ImageLimits()))
            rows.append(reference_model.encode_images([pixels])[0])
    return np.stack(rows)


def serving(channel: grpc.Channel, service: str = "") -> bool:
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return response.status == health_pb2.HealthCheckResponse.SERVING


class ModelGate:
    """Holds the model thread of a server inside its next batch until :meth:`open`.

    With the model held, callers queue up deterministically: what batches form, what the
    queue refuses and what expires no longer depends on timing.
    """

    def __init__(self, thread: ServerThread):
        self.model = thread.server.core.model
        self.entered = threading.Event()
        self._open = threading.Event()
        self.batches: list[tuple[str, int]] = []
        self._originals = {"image": self.model.encode_images, "text": self.model.encode_texts}
        self.model.encode_images = self._wrap("image")
        self.model.encode_texts = self._wrap("text")

    def _wrap(self, kind: str):
        original = self._originals[kind]

        def encode(rows):
            self.batches.append((kind, len(rows)))
            self.entered.set()
            if not self._open.wait(timeout=60):
                raise RuntimeError("gate never opened")
            return original(rows)

        return encode

    def open(self) -> None:
        self._open.set()
