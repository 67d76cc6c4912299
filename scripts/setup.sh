#!/usr/bin/env bash
# Takes a fresh Debian machine (with the Rust toolchain) to one that builds and runs
# the node and every test: system packages, cargo tools, then a release build.
#
#   ./scripts/setup.sh            install everything, build the release binary
#   ./scripts/setup.sh --deps     install only what the test suite needs
#   ./scripts/setup.sh --cross    install only what the cross builds need (cross.sh)
#
# Idempotent: what is present is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --deps) mode=deps ;;
  --cross) mode=cross ;;
esac

# System packages: a C toolchain for crates that build C (libFuzzer); iproute2,
# ping, iperf3 and nftables for the network-namespace tests; yggdrasil for the
# data-plane benchmark; bc for the test summary; chromium for the web view test;
# curl, microsocks (a SOCKS5 server) and python3 (an HTTP server) for the proxy test,
# python3 also for the DNS forwarder test's scripted resolvers and client;
# python3-venv (schemathesis is installed into a venv) and util-linux (unshare) for
# the API property test.
apt_packages=(build-essential pkg-config iproute2 bc iputils-ping iperf3 nftables yggdrasil
  chromium curl microsocks python3 python3-venv util-linux)
# Node.js 20+ with npm runs the web view test (playwright-core); Debian's when the
# machine has none.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
# OpenSSL's headers for the private-network build (`--features private`: TLS-PSK).
apt_packages+=(libssl-dev)
# The cross builds and their runs (scripts/cross.sh, tests/cross/run.sh): mingw-w64
# for Windows, the aarch64 cross compiler and C library, Wine (64-bit only: no i386
# architecture needed) and qemu-user to run the results, clang for ring's C when
# type-checking the macOS code.
cross_packages=(gcc-mingw-w64-x86-64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross wine64 qemu-user clang)
cross_targets=(x86_64-pc-windows-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
if [ "$mode" = cross ]; then
  apt_packages=("${cross_packages[@]}")
else
  apt_packages+=("${cross_packages[@]}")
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# The Rust standard library for the cross targets.
installed_targets="$(rustup target list --installed)" || {
  echo "setup: rustup not found; the cross targets need a rustup toolchain" >&2
  exit 1
}
missing=()
for t in "${cross_targets[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || missing+=("$t")
done
[ ${#missing[@]} -eq 0 ] || rustup target add "${missing[@]}"
[ "$mode" = cross ] && exit 0

# cargo-fuzz builds and runs the fuzz targets.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

if [ "$mode" = all ]; then
  cargo build --release --locked
  # The line tables go beside the binary (mycelium.debug), not in it.
  ./scripts/split-debug.sh target/release/mycelium
  echo "setup: done; the binary is target/release/mycelium ($(du -h target/release/mycelium | cut -f1))"
fi
