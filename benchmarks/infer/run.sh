#!/usr/bin/env bash
# CPU inference throughput: midtrain (InferenceModel: batched scoring, KV-cache decoding) vs Hugging Face transformers
# (batched masked scoring, the HF KV-cache decoding loop) on the 3m and 30m configurations, same thread count.
#
#   benchmarks/infer/run.sh [3m|30m|all] [items] [ctx] [prompt] [new]
#
# Needs target/midtrain.jar (mvn -B -q -P'!cuda' package -DskipTests) and a Python with torch + transformers
# (PYTHON, default python3; e.g. a venv: python3 -m venv /tmp/v && /tmp/v/bin/pip install torch transformers).
# Threads: MT_THREADS (default 2). Prints each engine's line and the midtrain / PyTorch ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHICH="${1:-all}"; ITEMS="${2:-64}"; CTX="${3:-96}"; PROMPT="${4:-128}"; NEW="${5:-128}"
source "$ROOT/benchmarks/infer/env.sh"
for cfg in 3m 30m; do
  [[ "$WHICH" == all || "$WHICH" == "$cfg" ]] || continue
  echo "== $cfg: $ITEMS items (ctx $CTX), prefill $PROMPT, decode $NEW, $MT_THREADS threads"
  MT="$("$JAVA" --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp "$CP" dev.midtrain.bench.InferBenchmark "$cfg" "$ITEMS" "$CTX" "$PROMPT" "$NEW")"
  echo "  $MT"
  PT="$("$PYTHON" "$ROOT/benchmarks/infer/torch_infer.py" "$cfg" "$ITEMS" "$CTX" "$PROMPT" "$NEW" 2>/dev/null)"
  echo "  $PT"
  python3 - "$MT" "$PT" <<'PY'
import re, sys
def nums(s):
    return (float(re.search(r"= ([0-9.]+) items/s", s).group(1)), float(re.search(r"prefill \d+ tokens: ([0-9.]+)", s).group(1)),
            float(re.search(r"decode \d+ tokens: ([0-9.]+)", s).group(1)))
a, b = nums(sys.argv[1]), nums(sys.argv[2])
print(f"  ratio midtrain / PyTorch: eval {a[0] / b[0]:.2f}x | prefill {a[1] / b[1]:.2f}x | decode {a[2] / b[2]:.2f}x")
PY
done
