#!/usr/bin/env bash
# The web view test: starts two nodes, B peered to A over loopback, and checks the
# page each serves at `/` in headless Chromium (webview.test.mjs). Installs what it
# needs first (Debian's chromium, playwright-core from package-lock.json).
#
#   MYCELIUM_BIN=target/debug/mycelium tests/web/run.sh   two real router-only nodes
#   tests/web/run.sh      one fake node (crates/api/examples/fake_node.rs), or, without
#                         that example, two pretend nodes (mock-node.mjs)
#
# A third node that demands a bearer token serves the token check (a real one when
# the binary has --api-token-file, else a fake one, else a pretend one).
#
# Other settings: WEBVIEW_SCREENSHOT (default /tmp/webview.png; B's page goes to
# /tmp/webview-b.png), WEBVIEW_CONVERGE_MS (default 20000), KEEP_LOGS=1 to keep the
# node logs. The nodes are stopped whatever happens.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian 12 ships Node.js 18: playwright-core is pinned to its last release for it.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 18 ]; then
  echo "run.sh: needs Node.js 18 or later with npm (playwright-core requires it); found ${node_major}" >&2
  exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing chromium" >&2
  as_root apt-get install -y chromium || { as_root apt-get update && as_root apt-get install -y chromium; }
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

work="$(mktemp -d /tmp/webview-test.XXXXXX)"
pids=()

stop_nodes() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

cleanup() {
  local status=$?
  stop_nodes
  if [ "$status" -ne 0 ] || [ -n "${KEEP_LOGS:-}" ]; then
    for log in "$work"/*.log; do
      [ -e "$log" ] || continue
      echo "---- $(basename "$log") (last 40 lines) ----" >&2
      tail -n 40 "$log" >&2
    done
  fi
  if [ -n "${KEEP_LOGS:-}" ]; then echo "run.sh: logs kept in $work" >&2; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port free for both TCP and UDP (QUIC), on every address.
free_port() {
  node --input-type=module -e '
    import net from "node:net";
    import dgram from "node:dgram";
    for (;;) {
      const tcp = net.createServer();
      await new Promise((ok, fail) => { tcp.once("error", fail); tcp.listen(0, "::", ok); });
      const { port } = tcp.address();
      const udp = dgram.createSocket("udp6");
      const free = await new Promise((ok) => { udp.once("error", () => ok(false)); udp.bind(port, "::", () => ok(true)); });
      udp.close(); tcp.close();
      if (free) { console.log(port); break; }
    }'
}

# Waits until a node's API answers, or fails if the node died or took over 30 s.
wait_for_api() {
  local name=$1 pid=$2 url=$3
  for _ in $(seq 300); do
    if curl -s -o /dev/null --max-time 1 "$url/api/v1/admin"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "run.sh: node $name exited before its API answered" >&2; return 1; fi
    sleep 0.1
  done
  echo "run.sh: node $name's API at $url did not answer within 30 s" >&2
  return 1
}

# Starts a process in the background, logging to $work/node-NAME.log, and waits for
# its API at URL to answer.
launch() {
  local name=$1 url=$2; shift 2
  "$@" >"$work/node-$name.log" 2>&1 &
  pids+=("$!")
  wait_for_api "$name" "$!" "$url"
}

# A real router-only node in its own directory; sets node_url and node_tcp.
start_node() {
  local name=$1; shift
  local api rpc tcp quic
  api=$(free_port); rpc=$(free_port); tcp=$(free_port); quic=$(free_port)
  mkdir -p "$work/$name"
  # Own config and data dirs, so no config file of this machine's user is read.
  launch "$name" "http://127.0.0.1:$api" \
    env XDG_CONFIG_HOME="$work/$name" XDG_DATA_HOME="$work/$name" \
    "$MYCELIUM_BIN" --key-file "$work/$name/key" --no-tun --disable-peer-discovery \
    --api-addr "127.0.0.1:$api" --jsonrpc-addr "127.0.0.1:$rpc" \
    --tcp-listen-port "$tcp" --quic-listen-port "$quic" "$@"
  node_url="http://127.0.0.1:$api"
  node_tcp="$tcp"
}

# The fake node of crates/api's example; sets node_url.
start_fake() {
  local name=$1; shift
  local api rpc
  api=$(free_port); rpc=$(free_port)
  launch "$name" "http://127.0.0.1:$api" \
    "$fake_bin" --api-addr "127.0.0.1:$api" --jsonrpc-addr "127.0.0.1:$rpc" "$@"
  node_url="http://127.0.0.1:$api"
}

token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

if [ -n "${MYCELIUM_BIN:-}" ]; then
  MYCELIUM_BIN="$(realpath "$MYCELIUM_BIN")"
  [ -x "$MYCELIUM_BIN" ] || { echo "run.sh: MYCELIUM_BIN=$MYCELIUM_BIN is not executable" >&2; exit 1; }
  start_node a
  a_url=$node_url a_tcp=$node_tcp
  start_node b --peers "tcp://127.0.0.1:$a_tcp"
  export WEBVIEW_NODE_A="$a_url" WEBVIEW_NODE_B="$node_url"
  export WEBVIEW_A_ENDPOINT="tcp://127.0.0.1:$a_tcp"
  echo "run.sh: node A at $WEBVIEW_NODE_A, node B at $WEBVIEW_NODE_B (peered to $WEBVIEW_A_ENDPOINT)" >&2
  # Real nodes: every check must run, none is skipped.
  export WEBVIEW_STRICT=1
  grep -q -- --api-token-file < <("$MYCELIUM_BIN" --help 2>/dev/null) || {
    echo "run.sh: $MYCELIUM_BIN has no --api-token-file: cannot test the token prompt" >&2
    exit 1
  }
  printf '%s\n' "$token" >"$work/token"
  start_node t --api-token-file "$work/token"
  export WEBVIEW_TOKEN_NODE="$node_url" WEBVIEW_TOKEN="$token"
elif [ -f "$root/crates/api/examples/fake_node.rs" ]; then
  echo "run.sh: MYCELIUM_BIN not set: testing the page against crates/api's fake_node example" >&2
  (cd "$root" && cargo build --quiet -p mycelium-api --example fake_node)
  fake_bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/fake_node"
  start_fake a
  export WEBVIEW_NODE_A="$node_url"
  start_fake t --token "$token"
  export WEBVIEW_TOKEN_NODE="$node_url" WEBVIEW_TOKEN="$token"
else
  echo "run.sh: MYCELIUM_BIN not set and no fake_node example: testing the page against pretend nodes" >&2
fi

cd "$here"
# One file: its tests run one after the other.
node --test webview.test.mjs
