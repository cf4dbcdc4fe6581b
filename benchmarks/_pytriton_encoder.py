"""The PyTriton peer: the same open_clip model behind NVIDIA Triton's dynamic batcher.

Runs in the PyTriton venv (``var/peers/pytriton-venv``, see ``_peer_envs.py``). Two Triton
models, ``text`` and ``image``, each one BYTES input of shape (1,) and a float32 output,
``max_batch_size`` and ``max_queue_delay_microseconds`` set like our encoder's batcher.
Stops on SIGINT (what ``Triton.serve`` waits for).

    var/peers/pytriton-venv/bin/python benchmarks/_pytriton_encoder.py --grpc-port P --http-port Q ...
"""

from __future__ import annotations

import argparse
import os
import sysconfig

# Triton's Python-backend stub dlopens libpython3.11; found through the system's library path it
# is Debian's, not this interpreter's (pyenv), and every model then fails to load with
# "'_thread.RLock' object has no attribute '_recursion_count'". The stub inherits this
# variable from tritonserver, which inherits it from us: set it before Triton starts.
os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
    filter(None, [sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH")])
)

import numpy as np
from _clip_model import ClipModel
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--model-configs", required=True, help="encoder_service/model_configs to register")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    model = ClipModel(args.model, args.pretrained, args.threads, args.model_configs)

    @batch
    def infer_text(text: np.ndarray) -> dict[str, np.ndarray]:
        return {"embedding": model.encode_texts([row[0].decode() for row in text])}

    @batch
    def infer_image(image: np.ndarray) -> dict[str, np.ndarray]:
        return {"embedding": model.encode_images([bytes(row[0]) for row in image])}

    batching = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=round(args.max_wait_ms * 1000)),
    )
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        http_address="127.0.0.1",
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        for name, infer in (("text", infer_text), ("image", infer_image)):
            triton.bind(
                model_name=name,
                infer_func=infer,
                inputs=[Tensor(name=name, dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="embedding", dtype=np.float32, shape=(-1,))],
                config=batching,
                strict=True,
            )
        print(f"serving on 127.0.0.1:{args.grpc_port}", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
