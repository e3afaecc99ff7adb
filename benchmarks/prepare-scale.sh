#!/usr/bin/env bash
# prepare's memory and throughput against input size: peak RSS (/usr/bin/time -v) and tokens/s of `midtrain prepare`
# on generated text of each size, (1) streaming with n-gram decontamination and a 1 GiB heap cap (memory must not grow
# with the input), (2) the same plus --dedup (the MinHash index grows with the documents: its cost per million
# documents is measured directly below: live heap after GC with 0.5-2M signatures), (3) sliced: N slices as concurrent processes, then
# --merge (at the largest size); and Hugging Face `tokenizers` (Rust, encode_batch) encoding the smallest size in the same run.
# Appends to benchmarks/results/prepare-scale-<date>.md.
# Usage: benchmarks/prepare-scale.sh [sizes in GB, default "1 2 5"] [threads, default 2] [slices, default 2]
#   PART_MB=1024 (size of each generated input file; sizes must be multiples of it), TOKENIZER=..., PYTHON=...
# Needs the packaged jar (mvn -B -q -P'!cuda' package -DskipTests), python3 with numpy and tokenizers, and free disk
# of about 3x the largest size under target/bench-scale/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source benchmarks/machine.sh
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
SIZES="${1:-1 2 5}"; THREADS="${2:-2}"; SLICES="${3:-2}"
PART_MB="${PART_MB:-1024}"
PY="${PYTHON:-python3}"
TOK="${TOKENIZER:-data/tokenizer/tokenizer.json}"
BENCH=data/benchmarks/sample_bench.jsonl
[[ -f target/midtrain.jar ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
W=target/bench-scale; mkdir -p "$W"
MAX=0; for s in $SIZES; do MAX=$("$PY" -c "print(max($MAX, $s))"); done
NPARTS=$("$PY" -c "import math; print(math.ceil($MAX * 1024 / $PART_MB))")

# generated text: unique documents of 60-400 words drawn with their frequencies from the words of the shipped
# KnowEdu/BoostQA samples (so the sample tokenizer sees text like the text it was trained on), with punctuation and
# line breaks; part K is seeded by K, so the parts are the same on every run
for ((k = 0; k < NPARTS; k++)); do
  f="$W/part-$(printf %03d $k)-${PART_MB}m.jsonl"
  [[ -f "$f" ]] && continue
  "$PY" - "$f" "$k" "$PART_MB" <<'PYEOF'
import json, sys
import numpy as np
out, k, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from collections import Counter
c = Counter()
for src, keys in (("data/knowedu/sample.jsonl", ("text",)), ("data/boostqa/sample.jsonl", ("question", "answer"))):
    for line in open(src, encoding="utf-8"):
        if line.strip():
            rec = json.loads(line)
            for key in keys: c.update(rec[key].replace(".", " ").replace(",", " ").split())
vocab = list(c); V = len(vocab)
w = np.array([c[x] for x in vocab], dtype=np.float64); w /= w.sum()
r = np.random.default_rng(1000 + k)
limit, n = mb << 20, 0
with open(out + ".tmp", "w", encoding="utf-8") as f:
    while n < limit:
        lens = r.integers(60, 401, size=1000)
        idx = r.choice(V, size=int(lens.sum()), p=w)
        seps = r.choice([" ", " ", " ", " ", " ", " ", " ", ", ", ". ", ".\n"], size=len(idx))
        pos = 0
        lines = []
        for L in lens:
            parts = []
            for i in range(pos, pos + L):
                parts.append(vocab[idx[i]]); parts.append(seps[i])
            pos += L
            lines.append(json.dumps({"text": "".join(parts).strip().capitalize() + "."}) + "\n")
        s = "".join(lines)
        f.write(s)
        n += len(s.encode("utf-8"))
import os; os.replace(out + ".tmp", out)
PYEOF
done

LOG="$(mktemp)"
# the MinHash index alone: live heap after GC per document added (random signatures; LSH at the default threshold 0.8)
mkdir -p "$W/indexcost/dev/midtrain/prepare"
cat > "$W/indexcost/dev/midtrain/prepare/IndexCost.java" <<'JEOF'
package dev.midtrain.prepare;
public class IndexCost {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]);
        MinHashDedup d = new MinHashDedup(new MinHashDedup.Params(5, 0.8, java.util.List.of()));
        d.startSource("x");
        java.util.SplittableRandom r = new java.util.SplittableRandom(1);
        Runtime rt = Runtime.getRuntime();
        System.gc(); long before = rt.totalMemory() - rt.freeMemory();
        int[] sig = new int[MinHashDedup.PERMUTATIONS];
        for (int i = 0; i < n; i++) { for (int j = 0; j < sig.length; j++) sig[j] = r.nextInt(); d.add(sig, i); }
        System.gc(); long after = rt.totalMemory() - rt.freeMemory();
        System.out.printf("MinHash index: %,d documents: %.1f MiB live heap, %.0f bytes/document%n", n, (after - before) / 1048576.0, (after - before) / (double) n);
        if (d.find(sig) == null) throw new IllegalStateException("lost a signature");
    }
}
JEOF
javac -cp "target/midtrain.jar:target/lib/*" -d "$W/indexcost" "$W/indexcost/dev/midtrain/prepare/IndexCost.java"
for n in 500000 1000000 2000000; do
  java -Xmx8g -cp "target/midtrain.jar:target/lib/*:$W/indexcost" dev.midtrain.prepare.IndexCost "$n" | tee -a "$LOG"
done
JAVA_BIN="java --add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m -cp target/midtrain.jar:target/lib/*"
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1"; }
summary() { grep -E '^prepare .*documents' "$1" | tail -1; }
run() {   # label heap args...
  local label="$1" heap="$2"; shift 2
  local t="$W/time.txt"
  /usr/bin/time -v $JAVA_BIN "-Xmx$heap" dev.midtrain.Main prepare --no-progress --tokenizer "$TOK" "$@" > "$W/run.txt" 2>&1 || { cat "$W/run.txt" >> "$LOG"; exit 1; }
  echo "$label: peak RSS $(rss "$W/run.txt") MiB, wall $(wall "$W/run.txt"); $(summary "$W/run.txt")" | tee -a "$LOG"
  grep -E 'near-duplicates' "$W/run.txt" >> "$LOG" || true
}
{
  echo "### HF tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)') (Rust), encode_batch of 1,000 documents at a time while reading, RAYON_NUM_THREADS=$THREADS"
  FIRST=$(echo $SIZES | awk '{print $1}')
  N=$("$PY" -c "print(round($FIRST * 1024 / $PART_MB))")
  FILES=$(ls "$W"/part-*-${PART_MB}m.jsonl | head -n "$N")
  RAYON_NUM_THREADS="$THREADS" "$PY" - "$TOK" $FILES <<'PYEOF'
import json, resource, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
t0 = time.time(); docs = toks = nbytes = 0; batch = []
def flush():
    global toks, batch
    for e in tok.encode_batch(batch, add_special_tokens=False): toks += len(e.ids) + 1
    batch = []
for f in sys.argv[2:]:
    with open(f, encoding="utf-8") as fh:
        for line in fh:
            nbytes += len(line); batch.append(json.loads(line)["text"]); docs += 1
            if len(batch) == 1000: flush()
flush()
dt = time.time() - t0
print(f"hf tokenizers: {nbytes/2**30:.2f} GiB, {docs:,} documents, {toks:,} tokens in {dt:.1f} s = {toks/dt:,.0f} tokens/s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB")
PYEOF
} 2>&1 | tee -a "$LOG"

for s in $SIZES; do
  N=$("$PY" -c "print(round($s * 1024 / $PART_MB))")
  FILES=$(ls "$W"/part-*-${PART_MB}m.jsonl | head -n "$N")
  echo "### ${s} GB: $N file(s) of $PART_MB MiB" | tee -a "$LOG"
  rm -rf "$W/out" "$W/out.slices"
  run "stream (-Xmx1g, --decontaminate)" 1g --source s --input $FILES --out "$W/out" --threads "$THREADS" --decontaminate "$BENCH"
  rm -rf "$W/out"
  run "stream + --dedup (-Xmx4g)" 4g --source s --input $FILES --out "$W/out" --threads "$THREADS" --decontaminate "$BENCH" --dedup
  rm -rf "$W/out"
  if (( N >= SLICES )) && [[ "$s" == "$MAX" ]]; then
    start=$(date +%s.%N); pids=()
    for ((i = 0; i < SLICES; i++)); do
      /usr/bin/time -v $JAVA_BIN -Xmx1g dev.midtrain.Main prepare --no-progress --tokenizer "$TOK" --source s --input $FILES --out "$W/out" \
        --threads "$(( THREADS / SLICES > 0 ? THREADS / SLICES : 1 ))" --decontaminate "$BENCH" --dedup --num-shards "$SLICES" --shard-index "$i" \
        > "$W/slice-$i.txt" 2>&1 & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { cat "$W"/slice-*.txt >> "$LOG"; exit 1; }; done
    for ((i = 0; i < SLICES; i++)); do echo "slice $i/$SLICES (-Xmx1g): peak RSS $(rss "$W/slice-$i.txt") MiB, wall $(wall "$W/slice-$i.txt")" | tee -a "$LOG"; done
    run "merge of $SLICES slices (-Xmx4g)" 4g --source s --input $FILES --out "$W/out" --decontaminate "$BENCH" --dedup --num-shards "$SLICES" --merge
    end=$(date +%s.%N)
    echo "sliced total (slices concurrent + merge): $("$PY" -c "print(f'{$end - $start:.1f}')") s" | tee -a "$LOG"
    rm -rf "$W/out"
  fi
done

OUT="benchmarks/results/prepare-scale-$(date -u +%Y-%m-%d).md"
{ echo "## prepare memory and throughput vs input size, $(date -u +%Y-%m-%dT%H:%MZ)"; echo
  echo "- machine: $(machine_summary); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- java: $(java -version 2>&1 | head -1)"
  echo "- command: benchmarks/prepare-scale.sh \"$SIZES\" $THREADS $SLICES (PART_MB=$PART_MB), tokenizer $TOK, commit $(git rev-parse --short HEAD)"
} | append_result "$OUT" "$LOG"
