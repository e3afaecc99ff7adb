#!/usr/bin/env bash
# `midtrain prepare` throughput with decontamination and near-duplicate removal on, beside the Rust Hugging Face
# `tokenizers` library encoding the same documents with the same tokenizer.json and thread count; and the shard
# SHA-256 verification rate at train start beside `sha256sum`. Appends to benchmarks/results/prepare-<date>.md.
# Usage: benchmarks/prepare.sh [threads] [copies of the sample text] [verify GB]   (defaults: 2 50 1; 50 copies are
# 80,000 documents, 28M tokens, so that both engines' rates are steady-state rates, not JVM start and JIT warm-up)
# Needs the packaged jar (mvn -B -q -P'!cuda' package -DskipTests) and python3 with `pip install tokenizers`
# (PYTHON=... to choose the interpreter). TOKENIZER=... picks the tokenizer.json (default: the sample one,
# data/tokenizer/tokenizer.json; Meta-Llama-3's is what a real run uses). Scratch data goes to target/bench-prepare/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
THREADS="${1:-2}"; COPIES="${2:-50}"; VERIFY_GB="${3:-1}"
PY="${PYTHON:-python3}"
TOK="${TOKENIZER:-data/tokenizer/tokenizer.json}"
[[ -f "$TOK" ]] || { echo "TOKENIZER: $TOK not found" >&2; exit 2; }
[[ -f target/midtrain.jar ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
W=target/bench-prepare; rm -rf "$W"; mkdir -p "$W"
# the text: the shipped KnowEdu-style sample, COPIES times, each copy's words shuffled per document (so near-duplicate
# removal has real work but no duplicates to drop beyond what the sample holds)
"$PY" - "$W/docs.jsonl" "$COPIES" <<'PYEOF'
import json, random, sys
out, copies = sys.argv[1], int(sys.argv[2])
docs = [json.loads(l)["text"] for l in open("data/knowedu/sample.jsonl", encoding="utf-8") if l.strip()]
r = random.Random(7)
with open(out, "w", encoding="utf-8") as f:
    for c in range(copies):
        for d in docs:
            if c:
                w = d.split(" "); r.shuffle(w); d = " ".join(w)
            f.write(json.dumps({"text": d}) + "\n")
PYEOF
LOG="$(mktemp)"
JAVA=(java --add-opens=java.base/java.nio=ALL-UNNAMED -cp "target/midtrain.jar:target/lib/*")
{
  echo "### HF tokenizers (Rust, Python binding $("$PY" -c 'import tokenizers; print(tokenizers.__version__)')), encode_batch, RAYON_NUM_THREADS=$THREADS, best of 3"
  ( RAYON_NUM_THREADS="$THREADS" "$PY" - "$W/docs.jsonl" "$TOK" <<'PYEOF'
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2])
texts = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
best, n = 1e9, 0
for _ in range(3):
    t0 = time.perf_counter(); enc = tok.encode_batch(texts, add_special_tokens=False); dt = time.perf_counter() - t0
    best = min(best, dt); n = sum(len(e.ids) for e in enc) + len(texts)   # + end-of-text per document, as prepare
print(f"hf tokenizers: {len(texts)} documents, {n} tokens in {best:.3f} s = {n / best:,.0f} tokens/s (encoding only, texts in memory)")
PYEOF
  ) | tee "$W/hf.txt"
  # prepare: its own rate (from reading the first record to the renamed output: read JSONL, clean, tokenize, write
  # Arrow shards, fsync) and the whole command's wall time (JVM start and tokenizer loading included)
  # cleaning-hf: the same with --encoder hf (Hugging Face tokenizers through DJL instead of the built-in encoder)
  for mode in plain cleaning cleaning-hf; do
    extra=()
    [[ $mode == cleaning* ]] && extra=(--decontaminate data/benchmarks/sample_bench.jsonl --dedup)
    [[ $mode == cleaning-hf ]] && extra+=(--encoder hf)
    for rep in 1 2 3; do
      t0=$(date +%s.%N)
      "${JAVA[@]}" dev.midtrain.Main prepare --source knowedu --input "$W/docs.jsonl" --tokenizer "$TOK" \
        --out "$W/out-$mode" --threads "$THREADS" --no-progress "${extra[@]}" > "$W/log" 2>&1 || { cat "$W/log"; exit 1; }
      t1=$(date +%s.%N)
      {
        grep -E '^prepare|near-dup|decontamination|encoder' "$W/log" | sed "s/^/$mode (run $rep): /"
        tok=$(grep -oE '[0-9,]+ tokens in' "$W/log" | head -1 | tr -d ', a-z')
        echo "$t0 $t1 $tok" | awk -v m="$mode" -v r="$rep" '{printf "%s (run %d): whole command incl. JVM start %.2f s = %.0f tokens/s\n", m, r, $2 - $1, $3 / ($2 - $1)}'
      } | tee -a "$W/runs.txt"
    done
  done
  # ratios to HF in this run (best of 3 each)
  hf=$(grep -oE 'hf tokenizers: .* = [0-9,]+ tokens/s' "$W/hf.txt" | grep -oE '[0-9,]+ tokens/s' | tr -d ', a-z/')
  for mode in plain cleaning cleaning-hf; do
    best=$(grep -E "^$mode \(run [0-9]\): prepare" "$W/runs.txt" | grep -oE '[0-9,]+ tokens/s' | tr -d ', a-z/' | sort -n | tail -1)
    bestw=$(grep -E "^$mode \(run [0-9]\): whole" "$W/runs.txt" | grep -oE '[0-9]+ tokens/s' | tr -d ' a-z/' | sort -n | tail -1)
    awk -v m="$mode" -v b="$best" -v w="$bestw" -v h="$hf" 'BEGIN {printf "ratio %s / hf tokenizers: %.2fx (prepare'"'"'s rate), %.2fx (whole command incl. JVM start)\n", m, b / h, w / h}'
  done
  echo "### shard verification at train start, $THREADS thread(s), vs sha256sum (one process per file, $THREADS in parallel)"
  TOKENS=$(( VERIFY_GB * 250000000 ))
  "${JAVA[@]}" dev.midtrain.bench.ShardVerifyBench "$W/verify" "$TOKENS" "$THREADS" 3
  BYTES=$(cat "$W"/verify/shard-*.arrow | wc -c)
  best=1e9
  for rep in 1 2 3; do
    t0=$(date +%s.%N); ls "$W"/verify/shard-*.arrow | xargs -P "$THREADS" -n 1 sha256sum > /dev/null; t1=$(date +%s.%N)
    best=$(echo "$t1 - $t0" | bc -l | awk -v b="$best" '{print ($1 < b) ? $1 : b}')
  done
  awk -v b="$BYTES" -v s="$best" 'BEGIN {printf "sha256sum: %.3f GB: best of 3 %.3f s = %.3f GB/s\n", b/1e9, s, b/1e9/s}'
} 2>&1 | tee "$LOG"
OUT="benchmarks/results/prepare-$(date +%Y-%m-%d).md"
{
  echo "## prepare and shard-verification benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(machine_summary); shared with other agents' jobs today (load average at start: $(cut -d' ' -f1-3 /proc/loadavg)), so rates vary between runs"
  echo "- java: $(java -version 2>&1 | head -1)"
  echo "- command: ${TOKENIZER:+TOKENIZER=$TOKENIZER }benchmarks/prepare.sh $THREADS $COPIES $VERIFY_GB"
  echo "- text: data/knowedu/sample.jsonl x $COPIES (words shuffled in the copies), tokenizer $TOK (sha256 $(sha256sum "$TOK" | cut -c1-12); data/tokenizer/tokenizer.json is the 512-token sample BPE with the Llama-3 pre-tokenizer)"
  echo "- prepare 'cleaning' = --decontaminate data/benchmarks/sample_bench.jsonl --dedup (NFKC units, 10/13-grams, MinHash 128 x 5-shingles); its tokens/s is end to end (read JSONL, clean, tokenize, write Arrow shards, fsync; JVM start and tokenizer loading excluded, 'whole command' includes them), the HF figure is encoding only (texts already in memory); 'cleaning-hf' = the same with --encoder hf (every document through Hugging Face tokenizers via DJL); prepare encodes by default with its built-in byte-level BPE (ByteLevelBpe, the same ids as HF tokenizers, tested), DJL/HF tokenizers only for layouts or characters it does not handle"
} | append_result "$OUT" "$LOG"
