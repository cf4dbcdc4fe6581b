"""Small helpers for calling the encoder over gRPC and checking against in-process open_clip."""

from __future__ import annotations

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.v1 import encoder_pb2
from clipsearch.wire import vectors_from_protos
from encoder_service.images import ImageLimits, decode_image

SERVICE = "clipsearch.v1.EncoderService"


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
