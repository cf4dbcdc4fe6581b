"""The naive baseline: grpc.server(ThreadPoolExecutor) running open_clip once per call, no batching.

Serves ``clipsearch.v1.EncoderService/Embed`` so ``clipsearch.EncoderClient`` calls it
unchanged. The pool's default size (min(32, cores + 4)) runs that many calls at once, each
a separate forward pass on ``--threads`` torch threads.

    python benchmarks/_naive_encoder.py --port P --model NAME --pretrained CHECKPOINT|random
"""

from __future__ import annotations

import argparse
from concurrent import futures

import grpc
from _clip_model import ClipModel

from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc
from clipsearch.wire import vectors_to_protos


class NaiveEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(self, model: ClipModel):
        self.model = model

    def Embed(self, request, context):
        kinds = {item.WhichOneof("content") for item in request.inputs}
        if kinds == {"text"}:
            vectors = self.model.encode_texts([item.text for item in request.inputs])
        elif kinds == {"image"}:
            vectors = self.model.encode_images([item.image for item in request.inputs])
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send only texts or only images in a call")
        return encoder_pb2.EmbedResponse(embeddings=vectors_to_protos(vectors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--model-configs", required=True, help="encoder_service/model_configs to register")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per forward pass")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor())
    encoder_pb2_grpc.add_EncoderServiceServicer_to_server(
        NaiveEncoder(ClipModel(args.model, args.pretrained, args.threads, args.model_configs)), server
    )
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"serving on 127.0.0.1:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
