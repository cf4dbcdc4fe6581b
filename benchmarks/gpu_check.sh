#!/usr/bin/env bash
# The encoder's GPU check as one prepared run: benchmarks/gpu_bench.py on a lent GPU machine
# (nvidia-h200 here), or rehearsed on the CPU with a tiny model.
#
#   benchmarks/gpu_check.sh --fetch-wheels   # here, once, with network: the wheels the GPU machine lacks
#   benchmarks/gpu_check.sh --rehearse       # here, on the CPU: same steps, tiny model, short cells
#   benchmarks/gpu_check.sh                  # there: ViT-B-32 (random weights) on cuda, fp16
#
# The GPU machine has Python 3.12 with torch, torchvision, grpcio, protobuf, pillow, numpy and
# prometheus-client but no network and no open_clip, ftfy or grpcio-health-checking/reflection/
# status. Those travel as wheels in .whl/ (git-ignored through .git/info/exclude; the device tool
# carries it: carry [".whl"], about 17 MB with the repository's 9 MB, under its 64 MiB). grpcio,
# protobuf and pillow travel too, pinned to the versions this repository is tested with (its
# generated stubs need grpcio >= 1.85.1 and protobuf 7). open_clip imports without timm and
# huggingface_hub, so neither travels.
#
# Everything goes to $OUT (default /tmp/clipsearch-gpu-check, or ...-rehearsal): environment.txt,
# bench.log, results.md, results.json, server-device.log, server-device-2.log, server-cpu.log (7
# files, within the device tool's 8). The run is cut at 540 s (the benchmark plans about 5 minutes
# on the GPU); results.md is rewritten after every step, so a cut run still returns what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 grpcio==1.85.3 grpcio-status==1.85.3
        grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 protobuf==7.36.2
        googleapis-common-protos==1.76.0 pillow==13.0.0)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

case "${1:-}" in
  --fetch-wheels)
    grep -qx '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null \
      || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
    ;;
  --rehearse) MODE=rehearse; OUT="${OUT:-/tmp/clipsearch-gpu-rehearsal}" ;;
  "") MODE=gpu; OUT="${OUT:-/tmp/clipsearch-gpu-check}" ;;
  *) echo "usage: $0 [--fetch-wheels | --rehearse]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$MODE" = gpu ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/environment.txt"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
elif [ "$MODE" = rehearse ] && compgen -G ".whl/*.whl" >/dev/null; then
  # The wheel set must install for the GPU machine's Python 3.12: one version each, all binary.
  "$PY" -m pip install -q --dry-run --ignore-installed --no-index --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${PLATFORMS[@]}" --target /tmp/clipsearch-wheel-check .whl/*.whl \
    && echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1), install for Python 3.12: ok" \
    || echo "wheels: do NOT install for Python 3.12"
fi
export PYTHONPATH="$PWD:$PWD/client:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null \
    || echo "no nvidia-smi"
  "$PY" - <<'PYEOF'
import grpc, open_clip, PIL, torch, torchvision
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("torchvision", torchvision.__version__, "open_clip", open_clip.__version__, "grpcio", grpc.__version__, "pillow", PIL.__version__)
PYEOF
} 2>&1 | tee "$OUT/environment.txt"
if [ "$MODE" = gpu ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "CUDA is not available: stopping" | tee -a "$OUT/environment.txt"; exit 1; }
  ARGS=()
else
  ARGS=(--rehearse)
fi
timeout -k 10 540 "$PY" benchmarks/gpu_bench.py "${ARGS[@]}" --out "$OUT" 2>&1 | tee "$OUT/bench.log"
status=${PIPESTATUS[0]}
ls -la "$OUT"
exit "$status"
