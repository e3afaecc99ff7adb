# Sourced by the benchmark scripts: one description of the machine for their result files.
machine_summary() {
  echo "$(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
}

# Appends one result section to $1: the header lines read from stdin, then the log file $2 as a code block (lines
# matching the extended regex $3, when given, left out: e.g. 'DEBUG|INFO'), then a blank line; removes the log.
# Usage: { echo "## Title, date"; echo; echo "- machine: $(machine_summary)"; } | append_result "$OUT" "$LOG" ['DEBUG|INFO']
append_result() {
  local out="$1" log="$2" drop="${3:-}"
  {
    cat
    echo
    echo '```'
    if [[ -n "$drop" ]]; then grep -v -E "$drop" "$log" || true; else cat "$log"; fi
    echo '```'
    echo
  } >> "$out"
  rm -f "$log"
  echo "wrote $out"
}
