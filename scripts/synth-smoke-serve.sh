#!/usr/bin/env bash
# Smoke test of `midtrain synthesize` against a real engine: starts `midtrain serve` on a checkpoint (the quickstart's:
# bin/prepare-samples && bin/midtrain train --config configs/tiny.yaml), runs every stage on a few sample seeds through
# the real HTTP client, prints the report and stops the server. A tiny model writes no JSON, so every answer is
# expected to be rejected (malformed_json, or http_400 where a prompt exceeds its context) and the report to warn.
# Usage: scripts/synth-smoke-serve.sh CHECKPOINT_DIR [SEEDS=6] [WORK=runs/synth-smoke]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CKPT="$1"; N="${2:-6}"; WORK="${3:-runs/synth-smoke}"
rm -rf "$WORK" && mkdir -p "$WORK"
head -n "$N" data/boostqa/sample.jsonl > "$WORK/seeds-in.jsonl"
bin/midtrain serve --checkpoint "$CKPT" --tokenizer data/tokenizer/tokenizer.json --port 0 --model-name tiny \
  > "$WORK/serve.log" 2>&1 &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q "^serving" "$WORK/serve.log" && break; kill -0 $SERVE || { cat "$WORK/serve.log"; exit 1; }; sleep 0.2; done
URL="$(grep -o 'http://[^ ]*/v1' "$WORK/serve.log" | head -1)"
echo "serve: $URL"
# 1. the shipped config and templates, pointed at serve (one model for every stage, budgets within --max-new-tokens):
#    the quickstart model's context (256 tokens) is shorter than the shipped prompts, so serve refuses them (http_400)
config() {   # config(TEMPLATES_DIR) -> stdout
  sed -e "s#base_url: http://127.0.0.1:8000/v1#base_url: $URL#" -e 's#model: deepseek-ai/DeepSeek-[RV][13]#model: tiny#' \
      -e 's#max_tokens: [0-9]*#max_tokens: 48#' -e 's#concurrency: 32#concurrency: 4#' -e 's#request_timeout_s: 900#request_timeout_s: 120#' \
      -e "s#templates_dir: .#templates_dir: $1#" \
      -e "s#decontaminate: \[../../data#decontaminate: [$ROOT/data#" configs/synthesis/boostqa.yaml
}
config "$ROOT/configs/synthesis" > "$WORK/smoke.yaml"
set +e
bin/midtrain synthesize --config "$WORK/smoke.yaml" --work "$WORK/shipped" --input "$WORK/seeds-in.jsonl"
echo "synthesize (shipped templates) exit code: $?"
# 2. terse templates that fit the context, and every stage fed (annotate's rejects leave generate nothing, so
#    generate and refine read inputs written here from the seeds): the model's text reaches the validator
T="$WORK/templates"; mkdir -p "$T"; cp configs/synthesis/rubric.yaml configs/synthesis/grades.yaml "$T/"
for t in annotate generate booster refine; do
  case $t in
    annotate) user='Label this text. JSON {"discipline": ..., "difficulty": "H1".."H5"}: {seed_text}'
              schema='{discipline: {type: string}, difficulty: {type: string, enum: [H1, H2, H3, H4, H5]}}' ;;
    generate|booster) user='Write a {grade} {discipline} question and answer from: {seed_text} JSON {"question", "answer", "difficulty"}'
              schema='{question: {type: string}, answer: {type: string}, difficulty: {type: string, enum: [H1, H2, H3, H4, H5]}}' ;;
    refine)   user='Solve: {question} Proposed: {answer} JSON {"solvable", "answer", "consistent", "grade", "difficulty"}'
              schema='{solvable: {type: boolean}, answer: {type: string}, consistent: {type: boolean}, grade: {type: string}, difficulty: {type: string}}' ;;
  esac
  printf 'name: %s\nversion: 1\nsystem: Answer in JSON.\nuser: %s\nschema: %s\n' "$t" "'$user'" "$schema" > "$T/$t.yaml"
done
config "$T" > "$WORK/terse.yaml"
run() { bin/midtrain synthesize --config "$WORK/terse.yaml" "$@"; }
A="$WORK/terse-annotate" G="$WORK/terse-generate" R="$WORK/terse-refine"
run --work "$A" --input "$WORK/seeds-in.jsonl" --stage curate,annotate,report | grep -A20 '^## Rejects'
mkdir -p "$G" "$R"   # generate fed with the curated seeds, labelled here; refine fed with the sample QA pairs
sed -e 's/^{/{"discipline":"physics","difficulty":"H4",/' "$A/seeds.jsonl" > "$G/annotated.jsonl"
run --work "$G" --stage generate,report | grep -A20 '^## Rejects'
sed -e 's/^{"question": *\("[^"]*"\), *"answer": *\("[^"]*"\).*/{"question":\1,"answer":\2}/' "$WORK/seeds-in.jsonl" \
  | awk '{n++; sub(/^{/, "{\"id\":\"g" n "\",\"seed_id\":\"g" n "\",\"branch\":\"multi_grade\",\"grade_requested\":\"college\",\"discipline\":\"physics\",\"seed_difficulty\":\"H3\",\"difficulty\":\"H3\","); print}' > "$R/generated.jsonl"
run --work "$R" --stage refine,report | grep -A20 '^## Rejects'
echo "first reject of each stage:"; for d in "$A/annotate" "$G/generate" "$R/refine"; do head -c 300 "$d.rejects.jsonl"; echo; done
