#!/usr/bin/env bash
# The encoder's GPU check, as one prepared run for a lent GPU machine (nvidia-h200 here).
#
# That machine has Python 3.12 with torch, torchvision, grpcio, protobuf, pillow and
# prometheus-client, but no network: the packages it lacks travel as wheels in .whl/
# (ignored by git, carried by the device tool). Fetch them once, here, with network:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl \
#     open_clip_torch==3.3.0 ftfy wcwidth grpcio==1.85.1 grpcio-status==1.85.1 \
#     grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 'protobuf>=7.35.1,<8' \
#     googleapis-common-protos
#
# Then run it there (device tool: carry [".whl"], timeout about 540 s):
#
#   benchmarks/gpu_check.sh
#
# It installs the wheels into /tmp/site, checks CUDA, runs the encoder tests that touch the
# model on the GPU, then the benchmark in fp16 and in bf16 on cuda, and writes everything
# to $OUT (or ./gpu-results): environment.txt, tests.log, bench-fp16.{md,json},
# bench-bf16.{md,json}. Each step has its own time limit so one slow step cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/environment.txt"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD:$PWD/client${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD:$PWD/client${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" - <<'EOF'
import grpc, open_clip, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("bf16 supported", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
print("open_clip", open_clip.__version__, "grpcio", grpc.__version__)
EOF
} 2>&1 | tee "$OUT/environment.txt"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "CUDA is not available: stopping" | tee -a "$OUT/environment.txt"; exit 1; }

# The encoder on CUDA through the real loading path: vectors match fp32 closely in both
# autocast precisions, batches run through pinned memory, warm-up at the max batch size.
timeout 120 "$PY" - <<'EOF' 2>&1 | tee "$OUT/tests.log"
import numpy as np
from PIL import Image
from encoder_service.model import load_model

reference = load_model("clipsearch-tiny", "random", device="cpu", precision="fp32")
image = Image.new("RGB", (64, 48), (200, 30, 30))
texts = ["a red dress", "blue sneakers"]
want_text = reference.encode_texts(list(reference.tokenize(texts)))
want_image = reference.encode_images([reference.preprocess_image(image)])
for precision in ("fp32", "fp16", "bf16"):
    model = load_model("clipsearch-tiny", "random", device="cuda", precision=precision)
    assert model.identity.fingerprint == reference.identity.fingerprint
    model.warm_up((1, 32))
    got_text = model.encode_texts(list(model.tokenize(texts)))
    got_image = model.encode_images([model.preprocess_image(image)])
    cos = min(float(np.min(np.sum(got_text * want_text, 1))), float(np.min(np.sum(got_image * want_image, 1))))
    print(f"cuda {precision}: dtype {model.identity.dtype}, min cosine to CPU fp32 {cos:.5f}")
    assert got_text.dtype == np.float32 and cos > 0.99, precision
print("cuda encoder checks passed")
EOF

for precision in fp16 bf16; do
  timeout 200 "$PY" benchmarks/encoder_bench.py --quick --device cuda --precision "$precision" \
    --json "$OUT/bench-$precision.json" 2>&1 | tee "$OUT/bench-$precision.log" \
    | sed -n '/^## Encoder/,$p' > "$OUT/bench-$precision.md"
done
ls -la "$OUT"
