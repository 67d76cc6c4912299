#!/usr/bin/env bash
# Moves a built binary's debug information into a file beside it, NAME.debug, and
# leaves a debug link in the binary, so the binary is about a fifth of its size and
# perf, gdb and addr2line still find line tables and symbols for it.
#
#   ./scripts/split-debug.sh target/release/mycelium [OBJCOPY]
#
# OBJCOPY is the target's objcopy (default objcopy; aarch64-linux-gnu-objcopy and
# x86_64-w64-mingw32-objcopy for the cross builds). A binary that already has a
# debug link (split before, and not rebuilt since) is left as it is, so its debug
# file is not replaced by an empty one.
set -euo pipefail
bin=$1
objcopy=${2:-objcopy}
objdump=${objcopy%objcopy}objdump
if grep -q '\.gnu_debuglink' < <("$objdump" -h "$bin"); then
  echo "split-debug: $bin already has its debug information apart"
  exit 0
fi
"$objcopy" --only-keep-debug "$bin" "$bin.debug"
# The link names the file only; tools look for it beside the binary.
(cd "$(dirname "$bin")" && "$objcopy" --strip-debug \
  --add-gnu-debuglink="$(basename "$bin").debug" "$(basename "$bin")")
