#!/usr/bin/env bash
# Instructions per call of each named variant of benches/instructions.rs, counted by
# callgrind: the run with N calls minus the run with none, divided by N.
# Usage: benches/count-instructions.sh VARIANT... (build first: cargo bench --bench instructions --no-run;
# BIN_DIR=DIR reads the binary from DIR/release/deps, e.g. a build with debug line tables)
set -euo pipefail
n=${N:-20000}
bin=$(ls -t ${BIN_DIR:-target}/release/deps/instructions-* | grep -v "\.d$" | head -n 1)
count() {
  local out
  out=$(mktemp)
  if ! valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>"$out.err"; then
    echo "$1: the run failed:" >&2
    grep -v '^==' "$out.err" >&2
    rm -f "$out" "$out.err"
    exit 1
  fi
  rm -f "$out.err"
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
  rm -f "$out"
}
for variant in "$@"; do
  base=$(count "$variant" 0)
  total=$(count "$variant" "$n")
  echo "$variant: $(( (total - base) / n )) instructions per call"
done
