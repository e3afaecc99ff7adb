#!/usr/bin/env bash
# CPU (TCP) communicator: all-reduce bus bandwidth for 1 MB .. 256 MB with 2 and 4 processes on loopback, beside the
# machine's memcpy bandwidth, and the latency of the per-step stop vote; plus the step time of a 4-process
# tp 2 x dp 2 run for the vote's share. Appends to benchmarks/results/comm-<date>.md.
# Usage: benchmarks/comm.sh        (needs target/classes and the dependency class path: mvn -B -q -P'!cuda' test-compile)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_WAIT_POLICY=passive
CPFILE="$(mktemp)"
mvn -B -q -o -P'!cuda' dependency:build-classpath -Dmdep.outputFile="$CPFILE" >/dev/null
CP="target/classes:$(cat "$CPFILE")"
JAVA=(java --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp "$CP")
OUT="benchmarks/results/comm-$(date +%Y-%m-%d).md"
LOG="$(mktemp)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
for n in 2 4; do
  port=$(free_port); pids=()
  for ((p = 1; p < n; p++)); do "${JAVA[@]}" dev.midtrain.bench.CommBench "$n" "$p" "$port" > /dev/null & pids+=($!); done
  "${JAVA[@]}" dev.midtrain.bench.CommBench "$n" 0 "$port" | tee -a "$LOG"
  wait "${pids[@]}"
done
# step time of a small 4-process run (the vote runs once per step)
RUN="$(mktemp -d)"
cat > "$RUN/c.yaml" <<'YAML'
model: {vocab_size: 512, dim: 128, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_dim: 344,
        rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 128, tied_embeddings: false}
optimizer: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 2}
train: {seq_len: 128, micro_batch_seqs: 2, global_batch_seqs: 8, steps: 20, log_every_steps: 1, eval_every_steps: 0, threads: 1}
data: {sources: [{name: none, path: /nonexistent, weight: 1.0}], valid_fraction: 0.05}
YAML
port=$(free_port)
for r in 0 1 2 3; do
  WORLD_SIZE=4 RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$((port - 1)) \
    "${JAVA[@]}" dev.midtrain.Main train --config "$RUN/c.yaml" --synthetic-data --run-dir "$RUN/run" --peak-tflops 0.1 \
    --tp 2 --dp 2 --no-checkpoints > "$RUN/p$r.log" 2>&1 &
done
wait
python3 - "$RUN/run/metrics.jsonl" <<'PY' | tee -a "$LOG"
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
t = statistics.median((b["tokens"] - a["tokens"]) / b["tokens_per_s"] for a, b in zip(rows[4:], rows[5:]))
print(f"4-process tp 2 x dp 2 run (dim 128, 4 layers, seq 128, 8 sequences per step): median step {t*1e3:.1f} ms (steps 6-20)")
PY
rm -rf "$RUN" "$CPFILE"
{
  echo "## CPU communicator benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary); shared with five other agents' jobs today (numbers are noisy, lower bounds)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- busbw = algbw x 2(n-1)/n (nccl-tests); memcpy = one mt_cpu_copy_bytes of the same size in the same process"
  echo "- command: benchmarks/comm.sh"
} | append_result "$OUT" "$LOG"
