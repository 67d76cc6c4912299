#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): formatting, lints, every unit,
# property, golden-vector and integration test, and the fuzz targets built and run
# over their corpora for a fixed number of inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --deps

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --workspace

echo "== fuzz targets"
./scripts/fuzz.sh smoke
