#!/usr/bin/env bash
# Pipeline parallelism on CPU: the measured bubble of 1F1B and of the interleaved schedule (pp 2, 1 and 2 virtual
# stages, m = 2..16 micro-batches; ranks as threads, one core each) against (pp-1)/(v*m+pp-1), and the point-to-point
# bandwidth between two processes on loopback (ping-pong one way, and both ways in one p2p batch). Appends to
# benchmarks/results/pipeline-<date>.md. Run on a quiet machine with at least pp free cores: the bubble is idle time,
# so any other load on the cores shows up as bubble.
# Usage: benchmarks/pipeline.sh        (needs target/midtrain.jar and target/lib: mvn -B -q -P'!cuda' package -DskipTests)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_WAIT_POLICY=passive
JAVA=(java --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp "target/midtrain.jar:target/lib/*")
OUT="benchmarks/results/pipeline-$(date +%Y-%m-%d).md"
LOG="$(mktemp)"
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
"${JAVA[@]}" dev.midtrain.bench.PipelineBench 2 1 2 4 8 16 2>&1 | grep -v -E 'INFO|DEBUG' | tee -a "$LOG"
"${JAVA[@]}" dev.midtrain.bench.PipelineBench 2 2 2 4 8 16 2>&1 | grep -v -E 'INFO|DEBUG' | tee -a "$LOG"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')
"${JAVA[@]}" dev.midtrain.bench.CommBench 2 1 "$port" > /dev/null &
pid=$!
"${JAVA[@]}" dev.midtrain.bench.CommBench 2 0 "$port" 2>&1 | grep -v -E 'INFO|DEBUG' | sed -n '/^p2p/,/^stop vote/p' | grep -v '^stop vote' | tee -a "$LOG"
wait "$pid"
{
  echo "## Pipeline bubble and p2p bandwidth (CPU), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary)"
  echo "- load average at start: $LOAD"
  echo "- bubble measured = 1 - (mean over ranks of the time in forwards and backwards) / (step's program time), median of 5 steps"
  echo "- command: benchmarks/pipeline.sh"
} | append_result "$OUT" "$LOG"
