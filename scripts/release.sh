#!/usr/bin/env bash
# Builds the release binaries for Linux x86_64, Linux aarch64 and Windows x86_64 and
# puts them in dist/ with their SHA-256 sums:
#
#   dist/mycelium-x86_64-unknown-linux-gnu
#   dist/mycelium-aarch64-unknown-linux-gnu
#   dist/mycelium-x86_64-pc-windows-gnu.exe
#   dist/SHA256SUMS
#   dist/*.debug         (each binary's debug information)
#
#   ./scripts/release.sh
#
# The cross builds are scripts/cross.sh's (reused when already built); each binary in
# dist/ has its debug information beside it in NAME.debug (scripts/split-debug.sh),
# for profiling and symbolising crash reports; target/ keeps the originals. dist/ is
# git-ignored and replaced on every run. macOS binaries cannot be linked here (no
# Apple SDK); build them on a Mac with `cargo build --release -p mycelium-cli`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/cross.sh build
echo "== cargo build --locked --release -p mycelium-cli"
cargo build --locked --release -p mycelium-cli

target_dir="${CARGO_TARGET_DIR:-target}"
rm -rf dist
mkdir dist
# ship SOURCE NAME OBJCOPY: a copy of a built binary in dist/, its debug information
# in dist/NAME.debug (moved out of the copy, or copied when setup.sh already moved
# it out of the built binary).
ship() {
  cp "$target_dir/$1" "dist/$2"
  if [ -f "$target_dir/$1.debug" ] && grep -q '\.gnu_debuglink' < <("${3%objcopy}objdump" -h "dist/$2"); then
    cp "$target_dir/$1.debug" "dist/$2.debug"
    "$3" --remove-section=.gnu_debuglink "dist/$2"
    (cd dist && "$3" --add-gnu-debuglink="$2.debug" "$2")
  else
    ./scripts/split-debug.sh "dist/$2" "$3"
  fi
}
ship release/mycelium mycelium-x86_64-unknown-linux-gnu objcopy
ship aarch64-unknown-linux-gnu/release/mycelium mycelium-aarch64-unknown-linux-gnu aarch64-linux-gnu-objcopy
ship x86_64-pc-windows-gnu/release/mycelium.exe mycelium-x86_64-pc-windows-gnu.exe x86_64-w64-mingw32-objcopy
(cd dist && sha256sum mycelium-* >SHA256SUMS)

ls -l dist
cat <<'EOF'

release: binaries and SHA256SUMS are in dist/.

Windows users need Wintun for the TUN device: download it from https://www.wintun.net/,
take bin/amd64/wintun.dll from the zip and put it beside mycelium.exe, then run
mycelium.exe from an administrator prompt (or run with --no-tun, without either).
EOF
