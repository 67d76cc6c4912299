#!/usr/bin/env bash
# Soak test: 10 real nodes (release binary), each in its own network namespace with a
# real TUN device, joined by veth links with ULA underlay addresses (fd00:5c:<link>::/64)
# in a ring of 10 links plus 3 chords (0-5, 2-7, 4-9), so no single cut partitions the
# network. For DURATION seconds links are cut and restored at random while traffic and
# messages flow across the overlay:
#
#   - ping -6 every 100 ms on 4 node pairs (overlay addresses, 3 hops apart);
#   - 2 iperf3 TCP streams rate-limited with -b, restarted whenever they die;
#   - messages through the nodes' HTTP API (POST /api/v1/messages) between random node
#     pairs at a steady rate, 32 B to 6 KB (1 to 5 chunks), each popped at its
#     destination (GET /api/v1/messages long-poll) and checked: source, payload hash.
#
# Link cuts: one link at a time (up to MAX_DOWN at once), never one whose loss would
# split the graph, held 2 to 70 s (a third of them past the 43 s after which a silent
# neighbour's connection is closed, so reconnection is exercised too). Two kinds, picked
# at random per cut (CUT_MODE=mixed), or only one of them:
#   drop  a silent black hole: nftables drops everything in and out of one veth end,
#         carrier stays up (a dead router or cable behind a switch); only the nodes'
#         Hello/IHU liveness (250 ms Hellos, 1.25 s to route around) notices;
#   down  `ip link set down` on one veth end: both ends lose carrier; the underlay
#         addresses are kept (keep_addr_on_down) so `up` restores the link as it was.
# (`tc netem loss 100%` would have been the other choice, but sch_netem is often not
# in the kernel; nftables is.) When the run ends every link is restored and the
# message receivers keep reading for DRAIN seconds; a message not delivered by then was
# lost: every one had at least DRAIN seconds of a whole, healed network.
#
# Nodes run with their default configuration (fast failure detection is the default),
# TCP peers only, no peer discovery (the topology is the one above), metrics on
# 127.0.0.1:9990 inside each namespace.
#
#   sudo ./bench/netns_soak.sh [DURATION]          (default 600 s)
#
# Environment knobs (defaults): DRAIN=30  MSG_RATE=2 (messages/s, whole network)
#   IPERF_RATE=50M (per stream)  CUT_MODE=mixed|drop|down  MAX_DOWN=2  SEED=<random>
#   SOAK_NO_BUILD=1 (use target/release/mycelium as it is)
#
# Prints the figures at the end; exits 1 if a node process exited or a message was lost,
# 2 if the set-up failed. Logs (node logs, ping/iperf3 output, message records, events)
# stay in /tmp/mysoak-<pid>/. Needs root, iproute2, nftables, iperf3, ping, curl,
# python3 (./scripts/setup.sh --deps installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
drain=${DRAIN:-30}
msg_rate=${MSG_RATE:-2}
iperf_rate=${IPERF_RATE:-50M}
cut_mode=${CUT_MODE:-mixed}
max_down=${MAX_DOWN:-2}
seed=${SEED:-$RANDOM}
n=10
tag=$(( $$ % 10000 ))
prefix="mysoak-$tag"
work="/tmp/mysoak-$$"
mkdir -p "$work"
bin=$PWD/target/release/mycelium

# Topology: ring plus chords. Link k joins ${la[k]} (which dials) and ${lb[k]}.
la=(); lb=()
for i in $(seq 0 $((n - 1))); do la+=("$i"); lb+=("$(( (i + 1) % n ))"); done
for c in "0 5" "2 7" "4 9"; do set -- $c; la+=("$1"); lb+=("$2"); done
# Traffic: ping pairs and iperf3 pairs (source destination), across the overlay.
ping_pairs=("1 6" "3 8" "0 7" "9 2")
iperf_pairs=("0 6" "8 3")

ns() { echo "$prefix-n$1"; }
# The veth end in node I's namespace that leads to node J.
ifname() { echo "ms${tag}v$1$2"; }

pids=()
node_pid=()
cleanup() {
  rm -f "$work/running"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pid[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}" "${node_pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # iperf3/ping started through `ip netns exec` in our namespaces.
  for i in $(seq 0 $((n - 1))); do
    for p in $(ip netns pids "$(ns "$i")" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$(ns "$i")" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "soak: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root"
for tool in ip nft iperf3 ping curl python3; do
  command -v "$tool" >/dev/null || die "missing $tool: run ./scripts/setup.sh --deps"
done
[ -e /dev/net/tun ] || die "missing /dev/net/tun"
if [ -z "${SOAK_NO_BUILD:-}" ]; then
  cargo build --release --locked -q -p mycelium-cli || die "release build failed"
fi
[ -x "$bin" ] || die "no $bin"

echo "soak: $n nodes, ${#la[@]} links, ${duration}s, cuts=$cut_mode (max $max_down down), seed=$seed, logs in $work"

# Namespaces.
for i in $(seq 0 $((n - 1))); do
  s=$(ns "$i")
  ip netns add "$s"
  ip -n "$s" link set lo up
  ip netns exec "$s" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1
  # The "drop" cuts: veth ends named in @cut see nothing in or out.
  ip netns exec "$s" nft -f - <<'EOF'
table inet mysoak {
  set cut { type ifname; }
  chain in { type filter hook input priority 0; policy accept; iifname @cut drop; }
  chain out { type filter hook output priority 0; policy accept; oifname @cut drop; }
}
EOF
done

# Links: link k has underlay fd00:5c:k::1 (dialling side) and fd00:5c:k::2.
declare -A peers
: > "$work/links"
for k in "${!la[@]}"; do
  a=${la[$k]}; b=${lb[$k]}
  ia=$(ifname "$a" "$b"); ib=$(ifname "$b" "$a")
  ip link add "$ia" netns "$(ns "$a")" type veth peer name "$ib" netns "$(ns "$b")"
  ip -n "$(ns "$a")" addr add "fd00:5c:$k::1/64" dev "$ia" nodad
  ip -n "$(ns "$b")" addr add "fd00:5c:$k::2/64" dev "$ib" nodad
  ip -n "$(ns "$a")" link set "$ia" up
  ip -n "$(ns "$b")" link set "$ib" up
  peers[$a]="${peers[$a]:-} tcp://[fd00:5c:$k::2]:9651"
  echo "$k $a $b $(ns "$a") $(ns "$b") $ia $ib" >> "$work/links"
done

# Nodes.
mkdir -p "$work/xdg"   # an empty config directory: no config file is picked up
addr=()
for i in $(seq 0 $((n - 1))); do
  "$bin" generate-keys -k "$work/n$i.key" >/dev/null
  addr+=("$("$bin" inspect --json -k "$work/n$i.key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')")
  args=(-k "$work/n$i.key" --tun-name myc0 --disable-quic --disable-peer-discovery
    --metrics-api-address 127.0.0.1:9990)
  # shellcheck disable=SC2206 # endpoints have no spaces
  [ -n "${peers[$i]:-}" ] && args+=(--peers ${peers[$i]})
  XDG_CONFIG_HOME="$work/xdg" ip netns exec "$(ns "$i")" "$bin" "${args[@]}" \
    >"$work/node$i.log" 2>&1 </dev/null &
  node_pid+=("$!")   # `ip netns exec` execs the node: this is the node's pid
  echo "$i ${addr[$i]} $!" >> "$work/nodes"
done

# Wait for a whole overlay: node 0 reaches everyone, and every traffic pair works.
reach() {
  local t0=$SECONDS
  until ip netns exec "$(ns "$1")" ping -6 -c 1 -W 1 "${addr[$2]}" >/dev/null 2>&1; do
    (( SECONDS - t0 < 90 )) || die "node $2 not reachable from node $1 after 90 s (logs: $work)"
    sleep 0.3
  done
}
t_boot=$SECONDS
for i in $(seq 1 $((n - 1))); do reach 0 "$i"; done
for p in "${ping_pairs[@]}" "${iperf_pairs[@]}"; do set -- $p; reach "$1" "$2"; done
echo "soak: overlay whole after $((SECONDS - t_boot)) s; running for ${duration} s"

start=$(date +%s.%N)
end_epoch=$(python3 -c "print(int($start + $duration))")
touch "$work/running"
echo "$start" > "$work/start"

# Pings: -D gives each reply's wall-clock time, so outages show as gaps.
for p in "${ping_pairs[@]}"; do
  set -- $p
  nice -n 5 ip netns exec "$(ns "$1")" ping -6 -D -O -n -i 0.1 -W 1 -w "$duration" "${addr[$2]}" \
    >"$work/ping-$1-$2.log" 2>&1 &
  pids+=("$!")
done

# iperf3 streams: a fresh one-off server per run; a client that dies early is restarted.
iperf_loop() {
  local src=$1 dst=$2 port=$3 run=0 now left
  while [ -f "$work/running" ]; do
    now=$(date +%s); left=$(( end_epoch - now ))
    (( left >= 3 )) || break
    ip netns exec "$(ns "$dst")" nice -n 10 iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.5
    echo "$(date +%s.%N) start $run $left" >> "$work/iperf-$src-$dst.runs"
    ip netns exec "$(ns "$src")" nice -n 10 iperf3 -6 -c "${addr[$dst]}" -p "$port" -t "$left" \
      -b "$iperf_rate" -J --connect-timeout 5000 >"$work/iperf-$src-$dst.$run.json" \
      2>>"$work/iperf-$src-$dst.err" || true
    echo "$(date +%s.%N) end $run" >> "$work/iperf-$src-$dst.runs"
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    run=$((run + 1))
    sleep 1
  done
}
port=5201
for p in "${iperf_pairs[@]}"; do
  set -- $p
  iperf_loop "$1" "$2" "$port" &
  pids+=("$!")
  port=$((port + 1))
done

# Messages: one driver per node, in the node's namespace (its API is 127.0.0.1:8989 there).
cat > "$work/msg.py" <<'PY'
"""Message driver for one node: sends to random other nodes at a steady rate, pops
what arrives, and at the end asks the node for the state of every message it sent."""
import base64, hashlib, http.client, json, random, sys, threading, time

me, n, rate, send_until, recv_until, seed, out = sys.argv[1:8]
me, n, rate = int(me), int(n), float(rate)
send_until, recv_until = float(send_until), float(recv_until)
addrs = json.loads(sys.argv[8])
rng = random.Random(f"{seed}-{me}")
lock = threading.Lock()
log = open(f"{out}/msg-{me}.jsonl", "a", buffering=1)


def emit(rec):
    with lock:
        log.write(json.dumps(rec) + "\n")


def call(method, path, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", 8989, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def receiver():
    while time.time() < recv_until:
        try:
            status, body = call("GET", "/api/v1/messages?timeout=1")
        except Exception as e:  # the node not answering is itself a finding
            emit({"k": "api_error", "op": "recv", "t": time.time(), "err": str(e)})
            time.sleep(0.5)
            continue
        if status == 204:
            continue
        now = time.time()
        if status != 200:
            emit({"k": "api_error", "op": "recv", "t": now, "status": status})
            time.sleep(0.5)
            continue
        m = json.loads(body)
        raw = base64.b64decode(m["payload"])
        head, _, pad = raw.partition(b"\n")
        try:
            h = json.loads(head)
        except ValueError:
            emit({"k": "recv_bad", "t": now, "id": m.get("id")})
            continue
        ok = hashlib.sha256(pad).hexdigest() == h["h"] and m["srcIp"] == addrs[h["src"]]
        emit({"k": "recv", "t": now, "src": h["src"], "seq": h["seq"], "sent": h["t"],
              "id": m["id"], "ok": ok})


sent = []     # accepted messages, appended by the sender
acked = {}    # seq -> state once the sender side says received or read


def status(rec):
    try:
        code, body = call("GET", f"/api/v1/messages/status/{rec['id']}")
        return json.loads(body)["state"] if code == 200 else f"http {code}"
    except Exception as e:
        return f"error {e}"


def checker():
    # The node forgets a message's status 600 s after it was sent, so look while it can.
    while time.time() < recv_until:
        time.sleep(5)
        for rec in list(sent):
            if rec["seq"] not in acked and time.time() - rec["t"] > 20:
                state = status(rec)
                if state in ("received", "read"):
                    acked[rec["seq"]] = state


def sender():
    seq = 0
    nxt = time.time()
    while True:
        nxt += rng.expovariate(rate) if rate > 0 else 1e9
        if nxt >= send_until:
            break
        time.sleep(max(0.0, nxt - time.time()))
        dst = rng.choice([i for i in range(n) if i != me])
        size = rng.choice([32, 200, 1000, 1300, 3000, 6000])
        pad = rng.randbytes(size)
        t = time.time()
        head = json.dumps({"src": me, "seq": seq, "t": t, "h": hashlib.sha256(pad).hexdigest()})
        payload = base64.b64encode(head.encode() + b"\n" + pad).decode()
        rec = {"k": "sent", "t": t, "seq": seq, "dst": dst, "size": size}
        try:
            code, body = call("POST", "/api/v1/messages",
                              {"dst": {"ip": addrs[dst]}, "payload": payload})
            rec["status"] = code
            if code == 201:
                rec["id"] = json.loads(body)["id"]
                sent.append(rec)
        except Exception as e:
            rec["status"] = None
            rec["err"] = str(e)
        emit(rec)
        seq += 1


threads = [threading.Thread(target=f) for f in (receiver, checker)]
for t in threads:
    t.start()
sender()
for t in threads:
    t.join()
for rec in sent:
    state = status(rec)
    if state not in ("received", "read"):
        state = acked.get(rec["seq"], state)
    emit({"k": "final", "seq": rec["seq"], "dst": rec["dst"], "id": rec["id"], "state": state})
PY
addrs_json=$(printf '%s\n' "${addr[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')
per_node_rate=$(python3 -c "print($msg_rate / $n)")
for i in $(seq 0 $((n - 1))); do
  ip netns exec "$(ns "$i")" nice -n 5 python3 "$work/msg.py" "$i" "$n" "$per_node_rate" \
    "$end_epoch" "$((end_epoch + drain))" "$seed" "$work" "$addrs_json" \
    >"$work/msg-$i.err" 2>&1 &
  pids+=("$!")
  msg_pids+=("$!")
done

# Node watch: RSS every 5 s; a node process that is gone or a zombie has died.
watch_nodes() {
  local dead=()
  while [ -f "$work/running" ]; do
    local t; t=$(date +%s)
    for i in $(seq 0 $((n - 1))); do
      local p=${node_pid[$i]} st="/proc/${node_pid[$i]}/status"
      if [ -z "${dead[$i]:-}" ] && { [ ! -e "$st" ] || grep -q '^State:.*Z' "$st" 2>/dev/null; }; then
        dead[$i]=1
        echo "$t $i" >> "$work/deaths"
        echo "soak: !!! NODE $i (pid $p) EXITED at +$((t - ${start%.*})) s !!!" >&2
        continue
      fi
      [ -n "${dead[$i]:-}" ] && continue
      awk -v t="$t" -v i="$i" '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print t, i, r, h}' "$st" \
        >> "$work/rss" 2>/dev/null || true
    done
    sleep 5
  done
}
watch_nodes &
pids+=("$!")

# Link cuts and restores.
cat > "$work/chaos.py" <<'PY'
"""Cuts and restores links at random, never splitting the graph; logs every event."""
import random, subprocess, sys, time

links_file, n, end, mode, max_down, seed, out = sys.argv[1:8]
n, end, max_down = int(n), float(end), int(max_down)
rng = random.Random(seed)
links = []
for line in open(links_file):
    k, a, b, nsa, nsb, ia, ib = line.split()
    links.append({"k": int(k), "a": int(a), "b": int(b), "ns": (nsa, nsb), "if": (ia, ib)})
log = open(out, "a", buffering=1)
down = {}  # link -> (restore at, how, side)


def connected(without):
    adj = {i: set() for i in range(n)}
    for l in links:
        if l["k"] not in without:
            adj[l["a"]].add(l["b"]); adj[l["b"]].add(l["a"])
    seen, todo = {0}, [0]
    while todo:
        for j in adj[todo.pop()] - seen:
            seen.add(j); todo.append(j)
    return len(seen) == n


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log.write(f"{time.time():.3f} error {' '.join(cmd)}: {r.stderr.strip()}\n")


def act(l, how, side, cut):
    ns, ifn = l["ns"][side], l["if"][side]
    t = time.time()  # before the command: under load `ip netns exec` takes a while
    if how == "drop":
        verb = "add" if cut else "delete"
        run(["ip", "netns", "exec", ns, "nft", verb, "element", "inet", "mysoak", "cut",
             "{", ifn, "}"])
    else:
        run(["ip", "-n", ns, "link", "set", ifn, "down" if cut else "up"])
    what = "cut" if cut else "restore"
    log.write(f"{t:.3f} {what} {l['k']} {l['a']}-{l['b']} {how} {ifn}\n")


next_cut = time.time() + rng.uniform(3, 8)
while time.time() < end:
    now = time.time()
    for k, (at, how, side) in list(down.items()):
        if now >= at:
            act(links[k], how, side, False)
            del down[k]
    if now >= next_cut:
        if len(down) < max_down:
            ok = [l for l in links if l["k"] not in down and connected(set(down) | {l["k"]})]
            if ok:
                l = rng.choice(ok)
                how = rng.choice(["drop", "down"]) if mode == "mixed" else mode
                hold = rng.uniform(2, 20) if rng.random() < 0.67 else rng.uniform(45, 70)
                side = rng.randrange(2)
                act(l, how, side, True)
                down[l["k"]] = (now + hold, how, side)
        next_cut = now + rng.uniform(4, 15)
    time.sleep(0.1)
for k, (_, how, side) in down.items():
    act(links[k], how, side, False)
log.write(f"{time.time():.3f} end\n")
PY
python3 "$work/chaos.py" "$work/links" "$n" "$end_epoch" "$cut_mode" "$max_down" "$seed" \
  "$work/events" &
chaos=$!
pids+=("$chaos")

wait "$chaos" || true
echo "soak: cutting done, links restored; draining messages for ${drain} s"
for p in "${msg_pids[@]}"; do wait "$p" || true; done
rm -f "$work/running"
sleep 1

# Final figures from every node still running.
for i in $(seq 0 $((n - 1))); do
  st="/proc/${node_pid[$i]}/status"
  if [ -e "$st" ] && ! grep -q '^State:.*Z' "$st"; then
    awk -v i="$i" '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print i, r, h}' "$st" >> "$work/rss-final"
    awk -v i="$i" '{print i, $14 + $15}' "/proc/${node_pid[$i]}/stat" >> "$work/cpu-final"
    ip netns exec "$(ns "$i")" curl -s -m 5 http://127.0.0.1:9990/metrics >"$work/metrics-$i.txt" || true
  elif ! grep -q " $i\$" "$work/deaths" 2>/dev/null; then
    echo "$(date +%s) $i" >> "$work/deaths"
    echo "soak: !!! NODE $i (pid ${node_pid[$i]}) EXITED !!!" >&2
  fi
done
for p in "${pids[@]}"; do [ "$p" = "$chaos" ] || kill "$p" 2>/dev/null || true; done

python3 - "$work" "$n" "$start" "$duration" "$drain" "$(getconf CLK_TCK)" "${ping_pairs[@]}" -- "${iperf_pairs[@]}" <<'PY'
import datetime, glob, json, os, re, statistics, sys

work, n, start, duration, drain, hz = sys.argv[1:7]
n, start, duration, drain, hz = int(n), float(start), float(duration), float(drain), int(hz)
rest = sys.argv[7:]
cut = rest.index("--")
ping_pairs = [tuple(map(int, p.split())) for p in rest[:cut]]
iperf_pairs = [tuple(map(int, p.split())) for p in rest[cut + 1:]]
failed = []


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


print()
print("=" * 78)
print(f"SOAK RESULTS  ({work})")
print("=" * 78)
events = []
for line in open(f"{work}/events"):
    f = line.split()
    if f[1] in ("cut", "restore"):
        events.append((float(f[0]), f[1], f[3], f[4]))
errors = [l for l in open(f"{work}/events") if " error " in l]
cuts = [e for e in events if e[1] == "cut"]
restores = [e for e in events if e[1] == "restore"]
print(f"duration: {duration:.0f} s (+{drain:.0f} s message drain)")
print(f"link events: {len(cuts)} cuts ({sum(e[3] == 'drop' for e in cuts)} drop, "
      f"{sum(e[3] == 'down' for e in cuts)} down), {len(restores)} restores"
      + (f", {len(errors)} command errors" if errors else ""))
holds, open_cut, at_end = [], {}, 0
for t, what, link, how in events:
    if what == "cut":
        open_cut[link] = t
    elif link in open_cut:
        held = t - open_cut.pop(link)
        if t >= int(start + duration):  # restored because the run ended
            at_end += 1
        else:
            holds.append(held)
if holds:
    print(f"  cut held: min {min(holds):.1f} s, median {statistics.median(holds):.1f} s, "
          f"max {max(holds):.1f} s, {sum(h > 43 for h in holds)} held > 43 s; "
          f"{at_end} still cut when the run ended")

# Pings: an outage is a run of two or more echo requests not answered within 1 s
# (late answers count as lost here: packets stuck in a dead link's TCP buffer come back
# seconds later when it heals); it is put down to the last link event before it began.
print("\nping (every 100 ms; 'timely' = answered within 1 s):")
interval = 0.1
reroute = {"cut": [], "restore": []}
unexplained = []
long_outages = []
for a, b in ping_pairs:
    text = open(f"{work}/ping-{a}-{b}.log").read()
    answered = {}  # seq -> (send time, rtt ms)
    for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from \S+ icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms",
                         text, re.M):
        seq, rtt = int(m.group(2)), float(m.group(3))
        answered.setdefault(seq, (float(m.group(1)) - rtt / 1000, rtt))
    m = re.search(r"(\d+) packets transmitted", text)
    tx = int(m.group(1)) if m else max(answered, default=0)
    timely = sorted(q for q, (_, rtt) in answered.items() if rtt < 1000)
    late = len(answered) - len(timely)
    gaps = []
    for p, q in zip(timely, timely[1:]):
        if q - p >= 3:
            gaps.append((answered[p][0], answered[q][0] - answered[p][0] - interval))
    if timely and tx - timely[-1] >= 3:  # still out when ping stopped
        gaps.append((answered[timely[-1]][0], (tx - 1 - timely[-1]) * interval))
    longest = max((g for _, g in gaps), default=0.0)
    loss = 100.0 * (tx - len(answered)) / tx if tx else float("nan")
    print(f"  {a}->{b}: sent {tx}, received {len(answered)} ({len(timely)} timely, {late} late), "
          f"loss {loss:.2f}% (not timely {100.0 * (tx - len(timely)) / tx if tx else 0:.2f}%), "
          f"outages {len(gaps)}, longest outage {longest:.2f} s")
    long_outages += [(a, b, t0, g) for t0, g in gaps if g > 2]
    for t0, g in gaps:
        before = [e for e in events if e[0] <= t0 + interval + 0.5]
        if before and t0 - before[-1][0] < 10:
            reroute[before[-1][1]].append(g)
        else:
            unexplained.append((a, b, t0 - start, g))
for what, xs in reroute.items():
    if xs:
        print(f"  outages after a {what}: {len(xs)}; p50 {pct(xs, .5):.2f} s, p90 {pct(xs, .9):.2f} s, "
              f"max {max(xs):.2f} s")
    else:
        print(f"  outages after a {what}: none")
for a, b, t, g in unexplained:
    print(f"  outage with no link event in the 10 s before: {a}->{b} at +{t:.1f} s, {g:.2f} s")
for a, b, t0, g in long_outages:
    near = ", ".join(f"{e[1]} {e[2]} ({e[3]}) {e[0] - t0:+.1f} s" for e in events
                     if -15 < e[0] - t0 < 2)
    print(f"  outage over 2 s: {a}->{b} at +{t0 - start:.1f} s for {g:.2f} s; link events: {near}")

# Liveness after a restore, from the node logs: how long each end took to hear the
# other again ("is heard again"), and for how long only one end did. While only one
# end hears the other, that end routes into a link whose other direction is still dead
# (a TCP connection still in retransmission back-off after a silent cut).
peer_link, heard = {}, {}
for i in range(n):
    for line in open(f"{work}/node{i}.log", errors="replace"):
        m = re.search(r"peer#(\d+) up: \w+ \[fd00:5c:(\w+)::", line)
        if m:
            peer_link[(i, m.group(1))] = m.group(2)
            continue
        m = re.match(r"(\S+Z) .*peer#(\d+) is heard again", line)
        if m and (i, m.group(2)) in peer_link:
            t = datetime.datetime.strptime(m.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            heard.setdefault((i, peer_link[(i, m.group(2))]), []).append(t)
links = {f"{l.split()[1]}-{l.split()[2]}": l.split()[0] for l in open(f"{work}/links")}
one_way = {"drop": [], "down": []}
for t, what, name, how in events:
    if what != "restore":
        continue
    a, b = map(int, name.split("-"))
    k = links[name]
    firsts = [min((x for x in heard.get((i, k), []) if t - 0.5 <= x < t + 60), default=None)
              for i in (a, b)]
    if None not in firsts:
        one_way[how].append((abs(firsts[0] - firsts[1]), max(firsts) - t))
for how, xs in one_way.items():
    if xs:
        w = [x for x, _ in xs]
        print(f"  after a {how} restore ({len(xs)} with both ends logged): one end hears the other, "
              f"the other not yet, for p50 {pct(w, .5):.2f} s, p90 {pct(w, .9):.2f} s, "
              f"max {max(w):.2f} s; both hear each other after at most {max(y for _, y in xs):.2f} s")

print(f"\niperf3 TCP (rate limit per stream as set):")
for a, b in iperf_pairs:
    total, secs, runs, died = 0, 0.0, 0, 0
    for path in sorted(glob.glob(f"{work}/iperf-{a}-{b}.*.json")):
        runs += 1
        try:
            j = json.load(open(path))
        except ValueError:
            died += 1
            continue
        if "error" in j:
            died += 1
        end = j.get("end", {}).get("sum_received") or {}
        if end.get("bytes"):
            total += end["bytes"]; secs += end.get("seconds", 0)
        else:  # cut short: add up the intervals it reported
            for iv in j.get("intervals", []):
                total += iv["sum"]["bytes"]; secs += iv["sum"]["seconds"]
    mbps = 8 * total / secs / 1e6 if secs else 0
    print(f"  {a}->{b}: {total / 1e9:.2f} GB in {secs:.0f} s, mean {mbps:.1f} Mbit/s, "
          f"runs {runs} (restarts {max(0, runs - 1)}, {died} ended in an error)")

# Messages.
sent, recv, final, api_err, bad = {}, {}, {}, 0, 0
dups = 0
for i in range(n):
    for line in open(f"{work}/msg-{i}.jsonl"):
        r = json.loads(line)
        if r["k"] == "sent":
            sent[(i, r["seq"])] = r
        elif r["k"] == "recv":
            key = (r["src"], r["seq"])
            if key in recv:
                dups += 1
            recv[key] = r
            bad += not r["ok"]
        elif r["k"] == "final":
            final[(i, r["seq"])] = r["state"]
        elif r["k"] == "recv_bad":
            bad += 1
        elif r["k"] == "api_error":
            api_err += 1
accepted = {k: v for k, v in sent.items() if v.get("status") == 201}
refused = len(sent) - len(accepted)
acked = sum(1 for s in final.values() if s in ("received", "read"))
got = [k for k in accepted if k in recv]
lost = sorted(k for k in accepted if k not in recv)
lat = [recv[k]["t"] - accepted[k]["t"] for k in got]
print(f"\nmessages: sent {len(sent)} (accepted 201: {len(accepted)}, refused/failed: {refused}), "
      f"acknowledged (state received/read) {acked}, received {len(got)}, lost {len(lost)}, "
      f"duplicates {dups}, corrupt {bad}, API errors {api_err}")
if lat:
    print(f"  delivery time: p50 {pct(lat, .5):.3f} s, p90 {pct(lat, .9):.3f} s, "
          f"p99 {pct(lat, .99):.3f} s, max {max(lat):.3f} s")
states = {}
for s in final.values():
    states[str(s)] = states.get(str(s), 0) + 1
print(f"  sender-side final states: {states}")
for k in lost[:20]:
    s = accepted[k]
    print(f"  LOST: {k[0]}->{s['dst']} seq {k[1]} id {s['id']} size {s['size']} "
          f"sent at +{s['t'] - start:.1f} s, sender state {final.get(k)}")
if lost:
    failed.append(f"{len(lost)} messages lost")
if bad:
    failed.append(f"{bad} corrupt messages")

# Nodes.
print("\nnodes (RSS in KiB; peak = VmHWM):")
rss = {}
for line in open(f"{work}/rss"):
    t, i, r, h = line.split()
    rss.setdefault(int(i), []).append((int(t), int(r), int(h)))
final_rss = {int(l.split()[0]): l.split()[1:] for l in open(f"{work}/rss-final")} \
    if os.path.exists(f"{work}/rss-final") else {}
cpu = {int(l.split()[0]): int(l.split()[1]) / hz for l in open(f"{work}/cpu-final")} \
    if os.path.exists(f"{work}/cpu-final") else {}
deaths = {}
if os.path.exists(f"{work}/deaths"):
    for line in open(f"{work}/deaths"):
        t, i = line.split()
        deaths[int(i)] = int(t)


def metrics(i):
    out = {}
    path = f"{work}/metrics-{i}.txt"
    if not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, val = line.rpartition(" ")
        out[name] = float(val)
    return out


print(f"  {'node':>4} {'rss@1min':>9} {'rss end':>8} {'peak':>8} {'cpu s':>7}  metrics")
for i in range(n):
    samples = rss.get(i, [])
    first = next((r for t, r, h in samples if t - start >= 60), samples[0][1] if samples else 0)
    if i in deaths:
        print(f"  {i:>4} !!! NODE EXITED at +{deaths[i] - start:.0f} s: see {work}/node{i}.log !!!")
        failed.append(f"node {i} exited")
        continue
    r_end, hwm = final_rss.get(i, ["?", "?"])
    m = metrics(i)
    g = lambda k: int(m.get(k, 0))
    dropped = {re.search(r'reason="(\w+)"', k).group(1): int(v)
               for k, v in m.items() if k.startswith("mycelium_dropped_packets_total") and v}
    alive = g('mycelium_peers{state="alive"}')
    print(f"  {i:>4} {first:>9} {r_end:>8} {hwm:>8} {cpu.get(i, 0):>7.1f}  "
          f"peers alive {alive}/{g('mycelium_peer_manager_known_peers')}, "
          f"links up/down {g('mycelium_router_peer_added_total')}/{g('mycelium_router_peer_removed_total')}, "
          f"peers died {g('mycelium_router_peer_died_total')}, "
          f"routes {g('mycelium_routes_selected')}/{g('mycelium_routes')}, "
          f"forwarded {g('mycelium_forwarded_packets_total')}, "
          f"pending {g('mycelium_pending_packets')}, dropped {dropped or 0}")
print()
if failed:
    print("SOAK FAILED: " + "; ".join(failed))
    sys.exit(1)
print("SOAK PASSED: no node exited, no message lost")
PY
