#!/bin/bash
# The query-embedding cache under a head-heavy query mix (docs/benchmarks.md, "Query-embedding cache").
#
#   benchmarks/query_cache_bench.sh [ROUNDS] [SECONDS] [CONCURRENCY]     (defaults 3, 8, 8)
#
# Starts two demo-model encoders (the cache on, and --query-cache-mib 0) and one index with
# 5,000 random items, then alternates `clipsearch loadtest --distinct 1000 --zipf 1.1` between
# them and prints, per round: throughput, p50s, the share of repeated texts and the cache's
# hit rate (read from the encoder's /metrics). Not run by `make test`.
set -euo pipefail
ROUNDS=${1:-3}; DUR=${2:-8}; CONC=${3:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
export PYTHONPATH=$ROOT/client:$ROOT${PYTHONPATH:+:$PYTHONPATH}
D=$(mktemp -d -t query-cache-bench.XXXX)
port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EON=$(port); EOFF=$(port); MON=$(port); MOFF=$(port); IX=$(port)
cd "$ROOT"
"$PY" -m clipsearch.apps.cli serve encoder --port "$EON" --metrics-port "$MON" --device cpu > "$D/enc-on.log" 2>&1 &
P1=$!
"$PY" -m clipsearch.apps.cli serve encoder --port "$EOFF" --metrics-port "$MOFF" --device cpu \
  --query-cache-mib 0 > "$D/enc-off.log" 2>&1 &
P2=$!
"$PY" -m clipsearch.apps.cli serve index --port "$IX" --data-dir "$D/data" > "$D/index.log" 2>&1 &
P3=$!
trap 'kill $P1 $P2 $P3 2>/dev/null; wait 2>/dev/null; rm -rf "$D/data"' EXIT
for _ in $(seq 1 300); do
  grep -q "encoder ready" "$D/enc-on.log" && grep -q "encoder ready" "$D/enc-off.log" && break
  sleep 1
done
"$PY" - "$EON" "$IX" <<'PYEOF'
import sys, time
import numpy as np
from clipsearch import EncoderClient, IndexClient
encoder, index = EncoderClient(f"127.0.0.1:{sys.argv[1]}"), IndexClient(f"127.0.0.1:{sys.argv[2]}")
for _ in range(120):
    try:
        encoder.embed_texts(["warm"]); index.list_collections(); break
    except Exception:
        time.sleep(1)
vectors = np.random.default_rng(0).standard_normal((5000, encoder.model_info().embedding_dim)).astype(np.float32)
fingerprint = encoder.last_fingerprint
index.create_collection("zipf", vectors.shape[1], model_fingerprint=fingerprint, exist_ok=True)
for s in range(0, len(vectors), 1000):
    index.upsert("zipf", [f"i{j}" for j in range(s, s + 1000)], vectors[s : s + 1000], model_fingerprint=fingerprint)
PYEOF
echo "round cache req/s total_p50_ms encode_p50_ms repeated hit_rate lookups load"
for round in $(seq 1 "$ROUNDS"); do
  for side in on off; do
    if [ "$side" = on ]; then E=$EON; M=$MON; else E=$EOFF; M=$MOFF; fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$PY" -m clipsearch.apps.cli loadtest --encoder "127.0.0.1:$E" --index "127.0.0.1:$IX" --collection zipf \
      --distinct 1000 --zipf 1.1 --concurrency "$CONC" --duration "$DUR" --warmup 1 --seed "$round" \
      --encoder-metrics "http://127.0.0.1:$M/metrics" --json > "$D/r$round-$side.json" || true
    "$PY" - "$D/r$round-$side.json" "$round" "$side" "$load" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
cache = s["query_cache"] or {}
lookups = cache.get("hits", 0) + cache.get("misses", 0)
print(sys.argv[2], sys.argv[3], round(s["throughput_rps"]), round(s["latency_ms"]["p50"], 2),
      round(s["calls"]["text"]["encode_ms"]["p50"], 2), f"{s['text_repeats']['share']:.0%}",
      f"{cache.get('hit_rate', 0):.1%}", int(lookups), sys.argv[4])
PYEOF
  done
done
