#!/usr/bin/env bash
# Builds and checks mycelium for the other systems it promises, from this Debian
# machine: the Windows (x86_64, mingw) and Linux aarch64 release binaries, and a
# type-check with clippy of the macOS (x86_64, aarch64) code and of the Windows
# code with its tests. tests/cross/run.sh then runs the two binaries (Wine, qemu).
#
#   ./scripts/cross.sh          every step (what scripts/test.sh runs)
#   ./scripts/cross.sh build    the two release builds only (what release.sh needs)
#
# Installs what it needs first (`setup.sh --cross`: the rustup targets, mingw-w64,
# the aarch64 cross compiler, clang). Each step prints
# "cross-build <name>: ok (N s)" or "cross-build <name>: FAIL (N s) <why>", and the
# last line is "cross-build: N passed, N failed"; the exit status is non-zero when a
# step failed. A missing tool fails the steps that need it, naming its package.
#
# macOS: nothing links without Apple's SDK, so clippy checks the code, and ring's
# build script, which compiles C for the target even then, gets Debian's clang with
# three stand-in headers (tests/cross/apple-stubs). The objects are never linked.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

mode=all
case "${1:-}" in
  "") ;;
  build) mode=build ;;
  *)
    echo "usage: $0 [build]" >&2
    exit 2
    ;;
esac

passed=0
failed=0

result() { # result NAME STATUS SECONDS [WHY]
  if [ "$2" -eq 0 ]; then
    echo "cross-build $1: ok ($3 s)"
    passed=$((passed + 1))
  else
    echo "cross-build $1: FAIL ($3 s) ${4:-exit status $2}"
    failed=$((failed + 1))
  fi
}

# step NAME TOOL PACKAGE COMMAND...: runs COMMAND, timed, if TOOL is on the PATH.
step() {
  local name="$1" tool="$2" package="$3"
  shift 3
  echo "== cross-build $name: $*"
  if ! command -v "$tool" >/dev/null 2>&1; then
    result "$name" 1 0 "$tool not found (Debian package $package; ./scripts/setup.sh --cross installs it)"
    return
  fi
  local start=$SECONDS status=0
  "$@" || status=$?
  result "$name" "$status" $((SECONDS - start))
}

# The targets and packages (setup.sh --cross; test.sh has run setup.sh --deps,
# which includes them, so this is quick there).
start=$SECONDS
setup_status=0
./scripts/setup.sh --cross || setup_status=$?
result setup "$setup_status" $((SECONDS - start)) "scripts/setup.sh --cross failed"

windows="x86_64-pc-windows-gnu"
aarch64="aarch64-unknown-linux-gnu"

step windows-release x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 \
  cargo build --locked --release --target "$windows" -p mycelium-cli
step aarch64-release aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu \
  cargo build --locked --release --target "$aarch64" -p mycelium-cli

if [ "$mode" = all ]; then
  stubs="$PWD/tests/cross/apple-stubs"
  for apple in x86_64-apple-darwin aarch64-apple-darwin; do
    var="${apple//-/_}"
    # shellcheck disable=SC2163 # the names are built from the target
    export "CC_$var=clang" "CFLAGS_$var=-ffreestanding -nostdlibinc -isystem $stubs"
    step "clippy-${apple%%-*}-macos" clang clang \
      cargo clippy --locked --target "$apple" -p mycelium-node -p mycelium-cli -- -D warnings
  done
  step clippy-windows x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 \
    cargo clippy --locked --target "$windows" -p mycelium-node -p mycelium-cli --all-targets -- -D warnings
fi

echo "cross-build: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
