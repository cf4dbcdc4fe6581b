#!/usr/bin/env bash
# Regenerates the Python code and type stubs for protos/clipsearch/v1/*.proto.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: client/, where the SDK package lives)
# tests/contract/test_generated_code.py runs this into a temp dir and diffs it with the committed output.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/client}"
py="$(command -v "${PYTHON:-python}")"
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"  # absolute: the script changes directory
plugin_dir="$(dirname "$(command -v "$py")")"
mkdir -p "$out/clipsearch/v1"
cd "$root/protos"
PATH="$plugin_dir:$PATH" "$py" -m grpc_tools.protoc -I. \
  --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  clipsearch/v1/*.proto
touch "$out/clipsearch/v1/__init__.py"
