#!/usr/bin/env bash
# Takes a fresh Debian machine (with the Rust toolchain) to one that builds and runs
# the node, or to one that runs every test.
#
#   ./scripts/setup.sh            a C compiler if there is none, then the release
#                                 binary, built as you (run it as yourself, not with
#                                 sudo: it asks for root only to install packages)
#   ./scripts/setup.sh --deps     what the test suite needs (system packages, cargo
#                                 tools, the cross targets); test.sh runs this
#   ./scripts/setup.sh --cross    only what the cross builds need (cross.sh)
#
# Idempotent: what is present is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=node
case "${1:-}" in
  --deps) mode=deps ;;
  --cross) mode=cross ;;
esac

# apt_install PACKAGE...: installs the packages not yet installed, with sudo when
# not root.
apt_install() {
  local missing=() p
  for p in "$@"; do
    grep -q "install ok installed" < <(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "setup: need root to install: ${missing[*]}" >&2
      exit 1
    }
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

if [ "$mode" = node ]; then
  # Building needs a C compiler (mimalloc, ring) and nothing else beyond Rust.
  apt_install build-essential
  cargo build --release --locked -p mycelium-cli
  # The line tables go beside the binary (mycelium.debug), not in it.
  ./scripts/split-debug.sh target/release/mycelium
  echo "setup: done; the binary is target/release/mycelium ($(du -h target/release/mycelium | cut -f1))"
  exit 0
fi

# System packages: a C toolchain for crates that build C (libFuzzer); iproute2,
# ping, iperf3 and nftables for the network-namespace tests; yggdrasil for the
# data-plane benchmark; bc for the test summary; chromium for the web view test;
# curl, microsocks (a SOCKS5 server) and python3 (an HTTP server) for the proxy test,
# python3 also for the DNS forwarder test's scripted resolvers and client;
# python3-venv (schemathesis is installed into a venv) and util-linux (unshare) for
# the API property test; procps (kill, sysctl) for the end-to-end tests;
# redis-server (with redis-cli) for the CDN helper test's shard servers.
apt_packages=(build-essential pkg-config iproute2 bc iputils-ping iperf3 nftables yggdrasil
  chromium curl microsocks python3 python3-venv util-linux procps redis-server)
# Node.js 18+ with npm runs the web view test (playwright-core 1.61, the last for
# Node.js 18, which Debian 12 ships); Debian's when the
# machine has none.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
# OpenSSL's headers for the private-network build (`--features private`: TLS-PSK).
apt_packages+=(libssl-dev)
# The package test (tests/package): systemd-analyze checks the unit, dpkg installs
# the .deb.
apt_packages+=(systemd dpkg)
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
apt_install "${apt_packages[@]}"

# Debian enables and starts redis-server as a system service on install; the CDN
# test starts its own servers in a namespace, so none is left running here.
if [ "$mode" = deps ] && command -v systemctl >/dev/null 2>&1 &&
  systemctl is-enabled redis-server >/dev/null 2>&1; then
  sudo_=()
  [ "$(id -u)" -ne 0 ] && sudo_=(sudo)
  "${sudo_[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
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
# cargo-deb makes the Debian package the package test installs.
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install --locked cargo-deb
fi
