#!/usr/bin/env bash
# Batched decoding on CPU: aggregate decode tokens/s at 1, 4 and 16 concurrent sequences, midtrain
# (BatchDecodeBenchmark: B key/value cache slots, one GEMM with M = B per step) vs Hugging Face transformers (a batch of
# the same prompts: the batched KV-cache loop and generate), 3m and 30m configurations, same thread count, one run.
#
#   benchmarks/infer/batch.sh [3m|30m|all] [prompt] [new] [B,B,...]
#
# Needs target/midtrain.jar (mvn -B -q -P'!cuda' package -DskipTests) and a Python with torch + transformers
# (PYTHON, default python3). Threads: MT_THREADS (default 2). Prints each engine's line and the ratios per B.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHICH="${1:-all}"; PROMPT="${2:-32}"; NEW="${3:-32}"; BS="${4:-1,4,16}"
source "$ROOT/benchmarks/infer/env.sh"
for cfg in 3m 30m; do
  [[ "$WHICH" == all || "$WHICH" == "$cfg" ]] || continue
  echo "== $cfg: prompt $PROMPT, $NEW new tokens per sequence, B in $BS, $MT_THREADS threads (load $(cut -d' ' -f1 /proc/loadavg))"
  MT="$("$JAVA" --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp "$CP" dev.midtrain.bench.BatchDecodeBenchmark "$cfg" "$PROMPT" "$NEW" "$BS")"
  echo "  $MT"
  PT="$("$PYTHON" "$ROOT/benchmarks/infer/torch_batch.py" "$cfg" "$PROMPT" "$NEW" "$BS" 2>/dev/null)"
  echo "  $PT"
  python3 - "$MT" "$PT" <<'PY'
import re, sys
def per_b(s, key):
    return {int(b): float(v) for b, v in re.findall(r"B=(\d+): decode ([0-9.]+)", s)} if key == "decode" else \
           {int(b): float(v) for b, v in re.findall(r"B=(\d+): [^|]*?(?:end-to-end|generate) ([0-9.]+)", s)}
a, b = sys.argv[1], sys.argv[2]
for key in ("decode", "end-to-end"):
    x, y = per_b(a, key), per_b(b, key)
    print(f"  ratio midtrain / PyTorch, {key}: " + " | ".join(f"B={k}: {x[k] / y[k]:.2f}x" for k in sorted(x) if k in y))
ma = per_b(a, "decode")
print("  midtrain decode speed-up over B=1: " + " | ".join(f"B={k}: {ma[k] / ma[1]:.1f}x" for k in sorted(ma)) if 1 in ma else "")
PY
done
