#!/usr/bin/env bash
# Checkpoint I/O throughput (save, verify, load, HF export/import), appended to benchmarks/results/checkpoint-<date>.md.
# Usage: benchmarks/checkpoint.sh [dir] [dim] [layers] [vocab]   (defaults: target/bench-ckpt 768 12 32000)
# Needs the packaged jar (mvn -B -q -P'!cuda' package -DskipTests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
[[ -f target/midtrain.jar ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
OUT="benchmarks/results/checkpoint-$(date +%Y-%m-%d).md"
LOG="$(mktemp)"
java -Xmx4g -cp "target/midtrain.jar:target/lib/*" dev.midtrain.bench.CheckpointBench "$@" | tee "$LOG"
{
  echo "## Checkpoint benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary)"
  echo "- filesystem of the output: $(df -hT "${1:-target}" 2>/dev/null | tail -1 | awk '{print $2}')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs share the machine)"
  echo "- command: benchmarks/checkpoint.sh $*"
} | append_result "$OUT" "$LOG" 'DEBUG|INFO'
