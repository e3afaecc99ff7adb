#!/usr/bin/env bash
# The ONE command for the GPU machine (no JDK, no network; CUDA driver, python3 with torch and the nvidia pip wheels).
# Run from the repository root:  bash .bundle/run.sh      (the bundle comes from benchmarks/gpu/make-bundle.sh)
# Steps: (1) GpuValidate: every kernel + cuBLAS GEMM, CUDA vs CPU, plus the single-rank NCCL check;
#        (1b) the attention rows again with MT_CUDA_ATTN=simple (the fallback path);
#        (2) 20 training steps GPU vs CPU and the 8B-shaped stack vs PyTorch (benchmarks/gpu/train_parity.sh);
#        (2b) the engine's NCCL communicator at world size 1 (parallel.NcclSelfCheck);
#        (3) KernelBench on cuda; (4) benchmarks/gpu/torch_bench.py, the same ops in PyTorch.
# Everything goes to $OUT if set, else benchmarks/results/; the summary is gpu-<date>.md naming the GPU.
# Exit status: 0 when the validation passed (benchmarks never change it), 1 otherwise.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -d "$HERE/../benchmarks/gpu" ]]; then REPO="$(cd "$HERE/.." && pwd)"; else REPO="$(pwd)"; fi
RESULTS="${OUT:-$REPO/benchmarks/results}"
mkdir -p "$RESULTS"
cd "$REPO"
STAMP="$(date -u +%Y-%m-%d)"

# --- Java: the bundled runtime, else a java on the PATH (development runs)
if [[ -x "$HERE/jre/bin/java" ]]; then JAVA="$HERE/jre/bin/java"; CP="$HERE/midtrain.jar:$HERE/lib/*"
else JAVA="$(command -v java || true)"; CP="$REPO/target/midtrain.jar:$REPO/target/lib/*"; fi
[[ -n "$JAVA" ]] || { echo "run.sh: no Java runtime (build .bundle with benchmarks/gpu/make-bundle.sh)"; exit 1; }

# --- NVIDIA libraries from the pip wheels (cuBLAS, cudart, NCCL); the driver's libcuda.so.1 comes from the system
PY="$(command -v python3 || true)"
NV_DIRS=""
if [[ -n "$PY" ]]; then
  NV_DIRS="$("$PY" - <<'PYEOF' 2>/dev/null
import os
dirs = []
try:
    import nvidia
    for base in list(nvidia.__path__):
        for sub in sorted(os.listdir(base)):
            d = os.path.join(base, sub, "lib")
            if os.path.isdir(d) and any(f.startswith(("libcublas.so", "libcudart.so", "libnccl.so", "libcublasLt.so")) for f in os.listdir(d)):
                dirs.append(d)
except Exception:
    pass
print(":".join(dirs))
PYEOF
)"
  if [[ -z "$NV_DIRS" ]]; then   # no importable 'nvidia' package: search the interpreter's prefix
    PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')"
    NV_DIRS="$(find "$PREFIX" -path '*nvidia*' \( -name 'libcublas.so.*' -o -name 'libnccl.so.*' -o -name 'libcudart.so.*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)"
  fi
fi
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [[ -d "$d" ]] && NV_DIRS="$NV_DIRS:$d"; done
export LD_LIBRARY_PATH="${NV_DIRS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
JOPTS=(--add-opens=java.base/java.nio=ALL-UNNAMED -Xss8m "-Dorg.bytedeco.javacpp.platform.linkpath=${NV_DIRS#:}")

GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
{
  echo "run.sh $(date -u +%FT%TZ)  gpu: ${GPU:-unknown}"
  echo "java: $JAVA"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  nvidia-smi 2>&1 | head -15
}   # printed only (it is in the run log): $OUT takes at most 8 files back

# --- (1) validation
echo "== (1) GpuValidate"
"$JAVA" "${JOPTS[@]}" -cp "$CP" dev.midtrain.bench.GpuValidate 2>&1 | tee "$RESULTS/gpu-validate.txt"
VALID=${PIPESTATUS[0]}
echo "== (1b) GpuValidate attention with MT_CUDA_ATTN=simple"
MT_CUDA_ATTN=simple "$JAVA" "${JOPTS[@]}" -cp "$CP" dev.midtrain.bench.GpuValidate --only attention 2>&1 | tee "$RESULTS/gpu-validate-simple-attn.txt"
VALID_SIMPLE=${PIPESTATUS[0]}

# --- (2) training: 20 steps of configs/gpu/parity.yaml on CUDA and on CPU from the same init and batches (losses within
#         bf16 tolerance), then the Llama-3-8B-shaped stack's throughput beside PyTorch (benchmarks/gpu/train_parity.sh)
echo "== (2) training: 20 steps GPU vs CPU"
JAVA="$JAVA" CP="$CP" JOPTS_STR="${JOPTS[*]}" RESULTS="$RESULTS" bash "$REPO/benchmarks/gpu/train_parity.sh" 2>&1 | tee "$RESULTS/train-parity.txt"
VALID_TRAIN=${PIPESTATUS[0]}

# --- (2b) the engine's NCCL communicator (parallel.NcclCommunicator), world size 1: all-reduce sum/max, reduce-scatter,
#          all-gather, broadcast on device buffers on the backend's stream
echo "== (2b) NcclSelfCheck"
"$JAVA" "${JOPTS[@]}" -cp "$CP" dev.midtrain.parallel.NcclSelfCheck 2>&1 | tee "$RESULTS/nccl-selfcheck.txt"
VALID_NCCL=${PIPESTATUS[0]}

# --- (3) kernel benchmarks (CUDA events, median of N)
echo "== (3) KernelBench cuda"
"$JAVA" "${JOPTS[@]}" -cp "$CP" dev.midtrain.bench.KernelBench cuda 2>&1 | tee "$RESULTS/kernel-bench-cuda.txt"

# --- (4) PyTorch at the same shapes
echo "== (4) torch_bench.py"
if [[ -n "$PY" ]]; then
  PYTHONUNBUFFERED=1 "$PY" "$REPO/benchmarks/gpu/torch_bench.py" 2>&1 | tee "$RESULTS/torch-bench.txt"
else
  echo "SKIPPED: no python3" | tee "$RESULTS/torch-bench.txt"
fi

# --- summary
MD="$RESULTS/gpu-$STAMP.md"
{
  echo "# GPU run $STAMP: ${GPU:-unknown GPU}"
  echo
  echo "Validation (CUDA vs CPU, rel L2 per output): $([[ $VALID == 0 ]] && echo PASS || echo FAIL); attention fallback path: $([[ $VALID_SIMPLE == 0 ]] && echo PASS || echo FAIL)"
  echo
  echo '```'; grep -E "FAIL|passed" "$RESULTS/gpu-validate.txt" "$RESULTS/gpu-validate-simple-attn.txt" | head -60; echo '```'
  echo
  echo "## NCCL communicator (world size 1): $([[ $VALID_NCCL == 0 ]] && echo PASS || echo FAIL)"; echo
  echo "## Training parity"; echo; echo '```'; grep -vE '^[|+]' "$RESULTS/train-parity.txt" | tail -40; echo '```'
  echo
  echo "## Kernels (midtrain CUDA)"; echo; sed -n '/^|/p' "$RESULTS/kernel-bench-cuda.txt"
  echo
  echo "## Same ops in PyTorch"; echo; sed -n '/^|/p' "$RESULTS/torch-bench.txt"
} > "$MD"
echo "summary: $MD"
[[ $VALID == 0 && $VALID_SIMPLE == 0 && $VALID_NCCL == 0 && $VALID_TRAIN == 0 ]] && exit 0 || exit 1
