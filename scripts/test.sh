#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): formatting, lints, every unit,
# property, golden-vector and integration test, and the fuzz targets built and run
# over their corpora for a fixed number of inputs, the web view in Chromium, the
# REST API under schemathesis (tests/api), a real node at routing-table scale
# (bench route_scale, smoke size), and the other systems: the Windows and
# Linux aarch64 release builds run under Wine and qemu, the macOS code type-checked
# (scripts/cross.sh, tests/cross), and the Debian package installed and started
# (tests/package). Ends with one line
# "summary: N passed, N failed", and fails when anything did.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --deps

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo clippy, private-network build (--features private)"
cargo clippy --locked -p mycelium-node -p mycelium-cli --all-targets \
  --features mycelium-cli/private -- -D warnings

echo "== cargo test"
# Property tests draw the same cases on every CI run (a failure found by a random
# local run goes into the test's .proptest-regressions file, replayed first).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261126}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
public=target/public-build
mkdir -p "$public"
cargo test --locked --workspace 2>&1 | tee "$log"
# The binary the README ships, kept before the private build below replaces
# target/debug/mycelium: the web, API and scale steps run this one.
cp target/debug/mycelium "$public/mycelium"
# The private-network build: TLS unit tests, in-process TLS nodes, the namespace test.
cargo test --locked -p mycelium-node --features private --lib tls:: 2>&1 | tee -a "$log"
cargo test --locked -p mycelium-node --features private --test tls 2>&1 | tee -a "$log"
cargo test --locked -p mycelium-cli --features private --test e2e_private 2>&1 | tee -a "$log"
ignored=$(sed -n 's/^test result: .* \([0-9]*\) ignored.*/\1/p' "$log" | paste -sd+ - | bc)
passed=$(sed -n 's/^test result: .*\. \([0-9]*\) passed.*/\1/p' "$log" | paste -sd+ - | bc)
failed=$(sed -n 's/^test result: .* \([0-9]*\) failed.*/\1/p' "$log" | paste -sd+ - | bc)

echo "== web view in headless Chromium (two live nodes)"
MYCELIUM_BIN="$public/mycelium" tests/web/run.sh 2>&1 | tee "$log"
web_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
web_failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
web_skipped=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$log" | tail -1)
passed=$((passed + ${web_passed:-0}))
# A skipped check counts as failed: against real nodes every check must run.
failed=$((failed + ${web_failed:-1} + ${web_skipped:-0}))

echo "== REST API property test: schemathesis over our OpenAPI document (live nodes)"
api_status=0
MYCELIUM_BIN="$public/mycelium" tests/api/run.sh 2>&1 | tee "$log" || api_status=$?
if [ "$api_status" -eq 0 ] && grep -q '^api-schemathesis: ok$' "$log"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

# add_counts LABEL STATUS: adds the last "LABEL: N passed, N failed" line of $log to
# the totals; a run that failed without counting a failure, or printed no such line,
# counts as one failure.
add_counts() {
  local counts p f
  counts=$(sed -n "s/^$1: \([0-9]*\) passed, \([0-9]*\) failed\$/\1 \2/p" "$log" | tail -1)
  read -r p f <<<"${counts:-0 0}"
  if [ -z "$counts" ] || { [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; }; then f=$((f + 1)); fi
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== routing at scale, smoke size: a node takes 2,000 subnets from 4 links, then sends its full table"
# The test profile reuses what cargo test built (the public binary included).
scale_status=0
cargo run --locked -q --profile test -p mycelium-bench --bin route_scale -- \
  --node-bin "$public/mycelium" 2000x4 2>&1 | tee "$log" || scale_status=$?
if [ "$scale_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== leaf mode at scale: 2 links push 100,000 subnets each at a full node, then at a leaf (RSS growth under 2 MiB)"
scale_status=0
cargo run --locked -q --profile test -p mycelium-bench --bin route_scale -- \
  --node-bin "$public/mycelium" --compare-leaf 1024 100000x2 2>&1 | tee "$log" || scale_status=$?
if [ "$scale_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== cross builds: Windows and Linux aarch64 release, macOS and Windows clippy"
cross_status=0
./scripts/cross.sh 2>&1 | tee "$log" || cross_status=$?
add_counts cross-build "$cross_status"

echo "== cross runs: the Windows build under Wine, the aarch64 build under qemu-user"
cross_status=0
MYCELIUM_BIN="$public/mycelium" tests/cross/run.sh 2>&1 | tee "$log" || cross_status=$?
add_counts cross "$cross_status"

echo "== the Debian package: built, installed, started with its unit's command line in a namespace"
package_status=0
tests/package/run.sh 2>&1 | tee "$log" || package_status=$?
add_counts package "$package_status"

echo "== fuzz targets"
./scripts/fuzz.sh smoke | tee "$log"
fuzzed=$(grep -c '^fuzz .*: ok' "$log" || true)

# Tests that cannot run on these machines are #[ignore]d with the reason, and not
# counted (the vsock loopback test: the kernel lacks the transport; hand-run timing
# figures), so they show neither as passed nor as failed.
echo "not counted: ${ignored:-0} #[ignore]d tests (cargo test -- --ignored --list names them and says why)"
echo "summary: $((passed + fuzzed)) passed, ${failed} failed"
[ "$failed" -eq 0 ]
