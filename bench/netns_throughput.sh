#!/usr/bin/env bash
# Data-plane benchmark: one pair of network namespaces joined by a veth link, measured
# in one run for raw veth, for our node and for Yggdrasil (Debian package
# `yggdrasil`) on the same link (ours both with TUN offload and on the portable
# one-packet path that macOS and Windows use): iperf3 single-flow throughput, daemon CPU seconds per
# GB carried, ping RTT, daemon RSS; then one idle node's RSS (no TUN, no peers) and
# the binary's size without its debug information.
#
#   sudo ./bench/netns_throughput.sh [SECONDS]     (default 10 s per iperf3 run)
#   sudo BASELINE_BIN=old/mycelium ./bench/netns_throughput.sh   (adds a row for it)
#
# Needs root, iproute2, iperf3, ping, yggdrasil; builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
tag="mb$$"
A="$tag-a"; B="$tag-b"
work=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in ip iperf3 ping yggdrasil; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run ./scripts/setup.sh" >&2; exit 1; }
done
cargo build --release --locked -q -p mycelium-cli
bin=$PWD/target/release/mycelium
# BASELINE_BIN=path/to/an/older/mycelium adds a row for it, measured in the same run.
baseline=${BASELINE_BIN:-}

ip netns add "$A"; ip netns add "$B"
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip link add "${tag}x" netns "$A" type veth peer name "${tag}y" netns "$B"
ip -n "$A" addr add fd00:99::1/64 dev "${tag}x" nodad
ip -n "$B" addr add fd00:99::2/64 dev "${tag}y" nodad
ip -n "$A" link set "${tag}x" up; ip -n "$B" link set "${tag}y" up

# cpu_ticks PID: user+system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# measure NAME DST [PID_A PID_B]: prints one result line.
measure() {
  local name=$1 dst=$2 pa=${3:-} pb=${4:-}
  ip netns exec "$B" iperf3 -s -1 -D >/dev/null 2>&1; sleep 0.3
  local t0a=0 t0b=0
  [ -n "$pa" ] && t0a=$(cpu_ticks "$pa") && t0b=$(cpu_ticks "$pb")
  local json; json=$(ip netns exec "$A" iperf3 -6 -c "$dst" -t "$secs" -J)
  local bps bytes
  bps=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  bytes=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
  local cpu_per_gb="-" rss="-"
  if [ -n "$pa" ]; then
    local ticks=$(( $(cpu_ticks "$pa") - t0a + $(cpu_ticks "$pb") - t0b ))
    cpu_per_gb=$(python3 -c "print(f'{$ticks / $hz / ($bytes / 1e9):.2f}')")
    rss=$(( ($(rss_kib "$pa") + $(rss_kib "$pb")) / 2 ))
  fi
  local rtt
  rtt=$(ip netns exec "$A" ping -6 -c 20 -i 0.05 -q "$dst" | awk -F/ '/rtt/ {print $5}')
  printf '%-10s %10.0f %14s %10s %12s\n' "$name" "$(python3 -c "print($bps/1e6)")" "$cpu_per_gb" "$rtt" "$rss"
  echo "$bps" > "$work/$name.bps"
  echo "$cpu_per_gb" > "$work/$name.cpu"
  echo "$rss" > "$work/$name.rss"
}

wait_ping() {
  for _ in $(seq 1 100); do
    ip netns exec "$A" ping -6 -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no path to $1" >&2; return 1
}

printf '%-10s %10s %14s %10s %12s\n' "stack" "Mbit/s" "cpu_s_per_GB" "rtt_ms" "rss_KiB"
measure raw fd00:99::2

# Ours.
"$bin" generate-keys -k "$work/a.key" >/dev/null; "$bin" generate-keys -k "$work/b.key" >/dev/null
addr_b=$("$bin" inspect --json -k "$work/b.key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')
# ours NAME [ARGS...]: our two nodes with ARGS, measured as NAME ($node_bin).
node_bin=$bin
ours() {
  local name=$1; shift
  local bin=$node_bin
  ip netns exec "$B" "$bin" -k "$work/b.key" --silent --disable-quic --disable-peer-discovery --tun-name myc0 "$@" >"$work/b.log" 2>&1 &
  local pb=$!; pids+=("$pb")
  ip netns exec "$A" "$bin" -k "$work/a.key" --silent --disable-quic --disable-peer-discovery --tun-name myc0 --peers "tcp://[fd00:99::2]:9651" "$@" >"$work/a.log" 2>&1 &
  local pa=$!; pids+=("$pa")
  wait_ping "$addr_b"
  measure "$name" "$addr_b" "$pa" "$pb"
  kill "$pa" "$pb"; wait "$pa" "$pb" 2>/dev/null || true; sleep 0.5
}
ours mycelium
# The one-packet-per-read path macOS and Windows use, over the same Linux TUN.
ours portable --no-tun-offload
if [ -n "$baseline" ]; then
  node_bin=$baseline ours baseline
fi

# Yggdrasil on the same link.
for side in a b; do
  yggdrasil -genconf -json > "$work/ygg-$side.json"
  python3 - "$work/ygg-$side.json" "$side" <<'PY'
import json, sys
path, side = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["Listen"] = ["tcp://[::]:12345"] if side == "b" else []
c["Peers"] = ["tcp://[fd00:99::2]:12345"] if side == "a" else []
c["MulticastInterfaces"] = []
c["AdminListen"] = "none"
c["IfName"] = "ygg0"
json.dump(c, open(path, "w"))
PY
done
ip netns exec "$B" yggdrasil -useconffile "$work/ygg-b.json" >"$work/yb.log" 2>&1 &
yb=$!; pids+=("$yb")
ip netns exec "$A" yggdrasil -useconffile "$work/ygg-a.json" >"$work/ya.log" 2>&1 &
ya=$!; pids+=("$ya")
addr_yb=$(yggdrasil -useconffile "$work/ygg-b.json" -address)
wait_ping "$addr_yb"
measure yggdrasil "$addr_yb" "$ya" "$yb"

kill "$ya" "$yb"; wait "$ya" "$yb" 2>/dev/null || true; sleep 0.5

# idle_rss BIN: the RSS of one node of BIN with no TUN and no peers, 5 s after start.
idle_rss() {
  ip netns exec "$A" "$1" -k "$work/a.key" --silent --no-tun --disable-peer-discovery >"$work/idle.log" 2>&1 &
  local p=$!; pids+=("$p")
  sleep 5
  rss_kib "$p"
  kill "$p"; wait "$p" 2>/dev/null || true; sleep 0.3
}
echo "idle_rss_KiB mycelium $(idle_rss "$bin")"
[ -n "$baseline" ] && echo "idle_rss_KiB baseline $(idle_rss "$baseline")"
# The binary as installed (scripts/setup.sh moves debug information beside it).
objcopy --strip-debug "$bin" "$work/stripped"
echo "binary_bytes mycelium $(stat -c %s "$work/stripped") (debug information apart)"
if [ -n "$baseline" ]; then
  objcopy --strip-debug "$baseline" "$work/stripped-baseline"
  echo "binary_bytes baseline $(stat -c %s "$baseline") as built, $(stat -c %s "$work/stripped-baseline") without debug information"
fi

python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
def read(name, kind):
    return float(open(f"{w}/{name}.{kind}").read())
raw, ours, portable, ygg = (read(n, "bps") for n in ("raw", "mycelium", "portable", "yggdrasil"))
print(f"mycelium/yggdrasil throughput: {ours / ygg:.2f}x; mycelium/raw veth: {100 * ours / raw:.1f}%")
print(f"portable path/yggdrasil throughput: {portable / ygg:.2f}x")
print(f"mycelium/yggdrasil CPU per GB: {read('mycelium', 'cpu') / read('yggdrasil', 'cpu'):.2f}x; "
      f"RSS under the flow: {read('mycelium', 'rss') / read('yggdrasil', 'rss'):.2f}x")
PY
