#!/usr/bin/env bash
# Loader throughput (tokens/s from a warm page cache), appended to benchmarks/results/loader-<date>.md.
# Usage: benchmarks/loader.sh [tokensPerSource] [seqLen] [microBatchSeqs] [ranks] [seconds]
# Needs the packaged jar (mvn -B -q -P'!cuda' package -DskipTests). Synthetic data goes to target/bench-loader/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
[[ -f target/midtrain.jar ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
OUT="benchmarks/results/loader-$(date +%Y-%m-%d).md"
LOG="$(mktemp)"
java --add-opens=java.base/java.nio=ALL-UNNAMED -cp "target/midtrain.jar:target/lib/*" dev.midtrain.bench.LoaderBench \
  target/bench-loader "${1:-67108864}" "${2:-8192}" "${3:-4}" "${4:-2}" "${5:-10}" | tee "$LOG"
{
  echo "## Loader benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs share the machine)"
  echo "- java: $(java -version 2>&1 | head -1)"
  echo "- command: benchmarks/loader.sh $*"
  echo "- what: BlendedLoader, 2 synthetic sources (weights 1:1), shuffled packed sequences read from memory-mapped Arrow shards, one thread per data-parallel rank, every id range-checked (checkVocab); tokens = (seq_len + 1) per sequence delivered, summed over ranks"
} | append_result "$OUT" "$LOG" 'DEBUG|INFO'
