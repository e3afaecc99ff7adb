#!/usr/bin/env bash
# Distributed checkpoint save and load throughput: one step of a tp 1 x dp 4 run written and read by 4 processes
# (one rank each: every process writes its rank's window, process 0 commits) vs by 1 process holding the 4 ranks.
# Appends to benchmarks/results/checkpoint-dist-<date>.md.
# Usage: benchmarks/checkpoint-dist.sh [dir] [dim] [layers] [vocab]   (defaults: target/bench-dist-ckpt 768 12 32000)
# Needs the packaged jar (mvn -B -q -P'!cuda' package -DskipTests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
[[ -f target/midtrain.jar ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
DIR="${1:-target/bench-dist-ckpt}"; shift || true
OUT="benchmarks/results/checkpoint-dist-$(date +%Y-%m-%d).md"
LOG="$(mktemp)"
JAVA=(java -Xmx2g -cp "target/midtrain.jar:target/lib/*" dev.midtrain.bench.DistCheckpointBench)
for round in 1 2; do
  for procs in 1 4; do
    rm -rf "$DIR"; mkdir -p "$DIR"
    pids=()
    for ((p = 0; p < procs; p++)); do "${JAVA[@]}" "$p" "$procs" 4 "$DIR" "$@" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid"; done
  done
done 2>&1 | grep -v -E 'DEBUG|INFO' | tee "$LOG"
rm -rf "$DIR"
{
  echo "## Distributed checkpoint benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary) -- shared by six agents today: the numbers are noisy"
  echo "- filesystem of the output: $(df -hT "$(dirname "$DIR")" 2>/dev/null | tail -1 | awk '{print $2}')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: benchmarks/checkpoint-dist.sh $DIR $*   (two rounds, 1 process then 4, same files)"
} | append_result "$OUT" "$LOG"
