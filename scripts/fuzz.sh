#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets in fuzz/.
#
#   ./scripts/fuzz.sh smoke            every target over its corpus and its regressions, plus
#                                      new inputs (100k; fewer for the slow targets, see
#                                      smoke_runs), the test suite
#   ./scripts/fuzz.sh run TARGET SECS  one target for SECS seconds, new inputs kept in fuzz/corpus
#   ./scripts/fuzz.sh list             the targets
#
# The toolchain here is stable; RUSTC_BOOTSTRAP lets cargo-fuzz pass the sanitizer
# flags it needs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

targets() { cargo fuzz list; }

# New inputs per target in the smoke run. The slow targets (a few thousand inputs a
# second under the address sanitizer) get fewer, to keep the whole smoke run near two
# minutes; their long campaigns are in fuzz/README.md.
smoke_runs() {
  case "$1" in
    api_http) echo 5000 ;;
    router) echo 30000 ;;
    message_bus | topic_config | cli_config) echo 30000 ;;
    *) echo 100000 ;;
  esac
}

case "${1:-smoke}" in
  list) targets ;;
  smoke)
    cargo fuzz build -O
    for t in $(targets); do
      scratch=$(mktemp -d)
      # New inputs go to the scratch directory; the committed corpus and the
      # inputs that once failed (regressions/) are only read.
      dirs=("corpus/$t")
      [ -d "regressions/$t" ] && dirs+=("regressions/$t")
      out=$(cargo fuzz run -O "$t" "$scratch" "${dirs[@]}" -- -runs="$(smoke_runs "$t")" -print_final_stats=1 2>&1) || {
        echo "$out" | tail -40
        echo "fuzz target $t failed" >&2
        rm -rf "$scratch"
        exit 1
      }
      runs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
      echo "fuzz $t: ok, $runs inputs"
      rm -rf "$scratch"
    done
    ;;
  run)
    t=${2:?target}; secs=${3:-60}
    cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1
    ;;
  *) echo "usage: $0 smoke | run TARGET SECS | list" >&2; exit 2 ;;
esac
