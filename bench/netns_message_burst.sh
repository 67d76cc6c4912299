#!/usr/bin/env bash
# Message burst as a user of the HTTP API makes one: two --no-tun nodes in network
# namespaces joined by a veth link (MTU 1500, ULA underlay), COUNT messages of 100
# bytes POSTed to A's API for B by one `curl --parallel --parallel-max 16`, while
# B's API is drained by 16 parallel long polls (`GET /api/v1/messages?timeout=3`,
# one more `curl --parallel`). Printed per run: the POSTs' status codes, when the
# last accepted message arrived, how many arrived in each second and each quarter
# second (median and minimum over the full ones), lost and duplicated, the
# sender's retransmitted frames and the packets each side of the link sent and
# the other received.
#
#   sudo ./bench/netns_message_burst.sh [COUNT ...]         (default 20000 100000)
#   sudo TRANSPORT=tcp ./bench/netns_message_burst.sh       (default quic)
#   sudo BASELINE_BIN=old/mycelium ./bench/netns_message_burst.sh 20000
#                                     (the same runs for another binary first)
#
# Needs root, iproute2, curl, python3 and stdbuf; builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(20000 100000)
transport=${TRANSPORT:-quic}
case "$transport" in tcp | quic) ;; *) echo "TRANSPORT must be tcp or quic" >&2; exit 2 ;; esac
tag="mm$$"
A="$tag-a"; B="$tag-b"
work=$(mktemp -d)
pids=()

cleanup() {
  for d in "$work"/run-*; do touch "$d/stop" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in ip curl python3 stdbuf; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/setup.sh --deps installs it)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
cargo build --release -q -p mycelium-cli
ours=$PWD/target/release/mycelium

ip netns add "$A"; ip netns add "$B"
ip link add "$tag-va" netns "$A" type veth peer name "$tag-vb" netns "$B"
ip -n "$A" addr add fd00:77::1/64 dev "$tag-va" nodad
ip -n "$B" addr add fd00:77::2/64 dev "$tag-vb" nodad
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$tag-va" up; ip -n "$B" link set "$tag-vb" up

# Prints the series `name{...}` of the node in namespace $1, summed.
metric() {
  ip netns exec "$1" curl -s 'http://[::1]:9999/metrics' |
    awk -v n="$2" 'index($0, n) == 1 { s += $NF } END { print s + 0 }'
}

# run BINARY COUNT
run() {
  local bin=$1 count=$2 dir="$work/run-$RANDOM"
  mkdir -p "$dir"
  local common=(--no-tun --disable-peer-discovery --tcp-listen-port 9651
    --api-addr '[::1]:8989' --jsonrpc-addr '[::1]:8990' --metrics-api-address '[::1]:9999')
  [ "$transport" = tcp ] && common+=(--disable-quic)
  ip netns exec "$B" "$bin" "${common[@]}" --key-file "$dir/b.key" >"$dir/b.log" 2>&1 &
  local pb=$!; pids+=("$pb")
  ip netns exec "$A" "$bin" "${common[@]}" --key-file "$dir/a.key" \
    --peers "$transport://[fd00:77::2]:9651" >"$dir/a.log" 2>&1 &
  local pa=$!; pids+=("$pa")
  local b_ip="" b_subnet=""
  for _ in $(seq 100); do
    read -r b_ip b_subnet < <(ip netns exec "$B" curl -s 'http://[::1]:8989/api/v1/admin' |
      python3 -c 'import sys, json; d = json.load(sys.stdin); print(d["nodeIp"], d["nodeSubnet"])' 2>/dev/null) && break
    sleep 0.1
  done
  [ -n "$b_ip" ] || { echo "B's API never answered"; cat "$dir/b.log"; exit 1; }
  local routed=""
  for _ in $(seq 100); do
    if grep -qF "\"$b_subnet\"" < <(ip netns exec "$A" curl -s 'http://[::1]:8989/api/v1/admin/routes/selected'); then
      routed=1; break
    fi
    sleep 0.1
  done
  [ -n "$routed" ] || { echo "A never had a route to B"; cat "$dir/a.log"; exit 1; }

  # curl configs: COUNT POSTs, each payload starting with its sequence number; and
  # a round of long polls.
  python3 - "$count" "$dir" "$b_ip" <<'PY'
import base64, sys
count, d, ip = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(d + "/post.cfg", "w") as f:
    for i in range(count):
        if i:
            f.write("next\n")
        p = base64.b64encode(i.to_bytes(8, "big") + b"x" * 92).decode()
        f.write('url = "http://[::1]:8989/api/v1/messages"\n')
        f.write('data = "{\\"dst\\":{\\"ip\\":\\"%s\\"},\\"payload\\":\\"%s\\"}"\n' % (ip, p))
        f.write('header = "Content-Type: application/json"\n')
        f.write('output = "/dev/null"\nwrite-out = "%{http_code}\\n"\n')
with open(d + "/get.cfg", "w") as f:
    for i in range(2000):
        if i:
            f.write("next\n")
        f.write('url = "http://[::1]:8989/api/v1/messages?timeout=3"\n')
PY
  # The drain: bodies are stamped as they arrive (several may share a line).
  cat >"$dir/stamp.py" <<'PY'
import base64, json, os, sys, time
out = open(sys.argv[1], "a")
dec, buf = json.JSONDecoder(), ""
while chunk := os.read(0, 65536):
    buf += chunk.decode()
    while (buf := buf.lstrip()):
        try:
            obj, end = dec.raw_decode(buf)
        except ValueError:
            break
        buf = buf[end:]
        seq = int.from_bytes(base64.b64decode(obj["payload"])[:8], "big")
        out.write("%.6f %d\n" % (time.time(), seq))
    out.flush()
PY
  : >"$dir/recv"
  ip netns exec "$B" bash -c "while [ ! -e '$dir/stop' ]; do stdbuf -o0 curl -s -N --parallel --parallel-max 16 -K '$dir/get.cfg' 2>/dev/null; done | python3 '$dir/stamp.py' '$dir/recv'" &
  local drain=$!; pids+=("$drain")
  sleep 0.5
  local t0 t1
  t0=$(date +%s.%N)
  ip netns exec "$A" curl -s --parallel --parallel-max 16 -K "$dir/post.cfg" >"$dir/codes" 2>"$dir/post.err" || true
  t1=$(date +%s.%N)
  local accepted
  accepted=$(grep -c '^201$' "$dir/codes" || true)
  # Wait while messages keep arriving.
  local last=-1 since
  since=$(date +%s)
  while true; do
    local n
    n=$(wc -l <"$dir/recv")
    [ "$n" -ge "$accepted" ] && break
    if [ "$n" != "$last" ]; then last=$n; since=$(date +%s); fi
    [ $(($(date +%s) - since)) -gt 30 ] && { echo "  nothing arrived for 30 s"; break; }
    sleep 0.2
  done
  # Stop the drain: its loop, its curl and the stamper (the job's pid is the
  # stamper's alone).
  touch "$dir/stop"
  pkill -f "$dir/stop" 2>/dev/null || true
  pkill -f "$dir/get.cfg" 2>/dev/null || true
  kill "$drain" 2>/dev/null || true
  local retrans sent_ab got_ab sent_ba got_ba
  retrans=$(metric "$A" mycelium_message_retransmissions_total)
  sent_ab=$(metric "$A" mycelium_peer_tx_packets_total)
  got_ab=$(metric "$B" mycelium_peer_rx_packets_total)
  sent_ba=$(metric "$B" mycelium_peer_tx_packets_total)
  got_ba=$(metric "$A" mycelium_peer_rx_packets_total)
  python3 - "$dir" "$t0" "$t1" "$count" "$accepted" <<'PY'
import collections, statistics, sys
d, t0, t1, count, accepted = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
codes = collections.Counter(l.strip() for l in open(d + "/codes"))
rows = [l.split() for l in open(d + "/recv")]
times = sorted(float(t) - t0 for t, _ in rows)
seqs = [int(s) for _, s in rows]
dup = len(seqs) - len(set(seqs))
print("  %d x 100 B offered in %.2f s: %s" % (count, t1 - t0, ", ".join("%s %d" % kv for kv in sorted(codes.items()))))
if not times:
    print("  nothing received"); sys.exit(0)
print("  received %d of %d accepted, the last %.2f s after the first POST (%.0f msg/s); lost %d, duplicated %d"
      % (len(set(seqs)), accepted, times[-1], len(set(seqs)) / max(times[-1], 1e-3), accepted - len(set(seqs)), dup))
# The rates are binned from the first arrival: curl reads its whole config before
# its first POST, a second for 100,000.
first = times[0]
print("  the first arrived %.2f s after curl started" % first)
for width, name in ((1.0, "second"), (0.25, "quarter second")):
    bins = [0] * (int((times[-1] - first) / width) + 1)
    for t in times:
        bins[int((t - first) / width)] += 1
    full = bins[:-1] or bins
    med = statistics.median(full)
    line = " ".join(str(b) for b in bins) if len(bins) <= 40 else "(%d bins)" % len(bins)
    print("  per %s: %s; full ones: median %d, minimum %d (%.2f of the median)"
          % (name, line, med, min(full), min(full) / max(med, 1)))
PY
  echo "  frames retransmitted by A: $retrans; link packets A->B $sent_ab sent, $got_ab received; B->A $sent_ba sent, $got_ba received"
  kill "$pa" "$pb" 2>/dev/null || true
  wait "$pa" "$pb" 2>/dev/null || true
}

for count in "${counts[@]}"; do
  if [ -n "${BASELINE_BIN:-}" ]; then
    echo "baseline $BASELINE_BIN over $transport, $count messages:"
    run "$BASELINE_BIN" "$count"
  fi
  echo "mycelium-rs over $transport, $count messages:"
  run "$ours" "$count"
done
