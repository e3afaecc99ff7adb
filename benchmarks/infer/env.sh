# Shared setup of the CPU inference benchmarks (run.sh, batch.sh), sourced after ROOT is set: the same thread count
# for both engines, OpenMP/OpenBLAS threads that sleep when idle, the machine-specific OpenBLAS overrides unset (no
# user machine has them), the Java command and class path, and the machine line.
PYTHON="${PYTHON:-python3}"
export MT_THREADS="${MT_THREADS:-2}"
export OMP_NUM_THREADS="$MT_THREADS"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
CP="${MT_CP:-$ROOT/target/midtrain.jar:$ROOT/target/lib/*}"
[[ -f "$ROOT/target/midtrain.jar" ]] || { echo "build first: mvn -B -q -P'!cuda' package -DskipTests" >&2; exit 2; }
source "$ROOT/benchmarks/machine.sh"
echo "machine: $(machine_summary), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
