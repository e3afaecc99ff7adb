#!/usr/bin/env bash
# CPU training throughput: midtrain (Java + C/OpenMP kernels + OpenBLAS) vs eager PyTorch on the same Llama-3
# configurations, same tokens per step, same thread count.
#
#   benchmarks/cpu/run.sh [3m|30m|all] [steps] [warmup]
#
# Needs: target/midtrain.jar (mvn -B -q -P'!cuda' package -DskipTests), /usr/bin/time, and for the reference
# Debian python3-torch with libopenblas0-pthread as the system BLAS (apt-get install -y python3-torch libopenblas0-pthread).
# Prints, per config and engine: tokens/s, model GFLOP/s as a share of the sgemm 1024^3 rate measured in the same
# process (OpenBLAS preset for midtrain, torch.mm for PyTorch), peak RSS; then the midtrain/PyTorch ratio.
# Threads: MT_THREADS (default 2) for OpenBLAS, OpenMP and torch. On a shared host the wall-clock rates move with the
# other load; each engine also prints its process CPU time over the timed steps (tokens per CPU-second) and
# /usr/bin/time's user + sys of the whole run, views that move less with other processes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHICH="${1:-all}"; STEPS="${2:-10}"; WARMUP="${3:-2}"
export MT_THREADS="${MT_THREADS:-2}"
export OMP_NUM_THREADS="$MT_THREADS"
# Two thread pools share the cores (OpenBLAS pthreads for GEMMs, OpenMP for the kernels): neither may spin while the
# other works, or each kernel runs on half a core (measured 2x slower end to end). bin/midtrain sets the same.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
CP="$ROOT/target/midtrain.jar:$ROOT/target/lib/*"
[[ -f "$ROOT/target/midtrain.jar" ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }

source "$ROOT/benchmarks/machine.sh"
echo "machine: $(machine_summary), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"

run() {  # run LABEL CMD... -> prints the engine's line and peak RSS; sets TPS
  local log; log="$(mktemp)"
  /usr/bin/time -v "$@" > "$log.out" 2> "$log" || { cat "$log.out" "$log" >&2; exit 1; }
  local line rss cpu; line="$(grep -E 'tokens/s' "$log.out" | head -1)"; rss="$(grep 'Maximum resident' "$log" | awk '{print $NF}')"
  cpu="$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$log")"
  echo "  $line | peak RSS $((rss / 1024)) MiB | process CPU time $cpu s (whole run)"
  TPS="$(sed -E 's/.*: ([0-9]+) tokens\/s.*/\1/' <<< "$line")"
  rm -f "$log" "$log.out"
}

for cfg in 3m 30m; do
  [[ "$WHICH" == all || "$WHICH" == "$cfg" ]] || continue
  echo "== $cfg: $STEPS timed steps after $WARMUP warm-up steps, $MT_THREADS threads"
  run "$JAVA" --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp "$CP" dev.midtrain.bench.TrainBenchmark "$cfg" "$STEPS" "$WARMUP"
  MT=$TPS
  run /usr/bin/python3 "$ROOT/benchmarks/cpu/torch_train.py" "$cfg" "$STEPS" "$WARMUP"
  PT=$TPS
  awk -v a="$MT" -v b="$PT" -v c="$cfg" 'BEGIN { printf "  %s ratio midtrain / PyTorch = %.2fx\n", c, a / b }'
done
