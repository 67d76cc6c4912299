#!/usr/bin/env bash
# Runs the cross-built binaries on this machine (after scripts/cross.sh built them):
# the Windows build under Wine, the Linux aarch64 build under qemu-user.
#
#   tests/cross/run.sh
#
# Prints one line per check, "cross <name>: ok" or "cross <name>: FAIL <why>", and
# last "cross: N passed, N failed"; exits non-zero when a check failed. A missing
# tool or binary fails the checks that need it (naming it); nothing is skipped.
#
# For each foreign binary: `inspect --json` on keys of the interop vectors
# (crates/proto/tests/fixtures/interop/addresses.tsv), then a --no-tun node of it
# peering over loopback TCP with three native nodes of ours: one dials it over
# [::1], one over 127.0.0.1 (its [::] listener must take IPv4 too), and it dials the
# third over 127.0.0.1. Each pair must see the other's subnet in its selected routes
# and pass a message each way through the REST API (POST /api/v1/messages, then a
# long poll on GET /api/v1/messages). Windows only: generate-keys, the default key
# and config paths (the Known Folders LocalAppData and RoamingAppData, which Wine
# keeps under $WINEPREFIX/drive_c/users/<user>/AppData), and the failure to start
# without --no-tun when wintun.dll is missing.
#
# Settings: MYCELIUM_BIN, the native binary (default target/debug/mycelium);
# CROSS_WINDOWS_EXE and CROSS_AARCH64_BIN, the binaries under test (default: the
# release builds under $CARGO_TARGET_DIR, else target/); CROSS_TIMEOUT, seconds any
# one wait may take (default 60); KEEP_LOGS=1 keeps the scratch directory and logs.
# Only loopback is used; every process started is stopped on exit.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
native="${MYCELIUM_BIN:-$target_dir/debug/mycelium}"
win_exe="${CROSS_WINDOWS_EXE:-$target_dir/x86_64-pc-windows-gnu/release/mycelium.exe}"
arm_bin="${CROSS_AARCH64_BIN:-$target_dir/aarch64-unknown-linux-gnu/release/mycelium}"
vectors="$root/crates/proto/tests/fixtures/interop/addresses.tsv"
timeout_s="${CROSS_TIMEOUT:-60}"
wine_loader=/usr/lib/wine/wine64
arm_sysroot=/usr/aarch64-linux-gnu
# Make relative paths absolute: the commands below run from the scratch directory.
case "$native" in /*) ;; *) native="$root/$native" ;; esac
case "$win_exe" in /*) ;; *) win_exe="$root/$win_exe" ;; esac
case "$arm_bin" in /*) ;; *) arm_bin="$root/$arm_bin" ;; esac

work="$(mktemp -d /tmp/cross-test.XXXXXX)"
export WINEPREFIX="$work/wineprefix" WINEDEBUG=-all WINELOADER="$wine_loader"
# Wine must not try a display; nothing here has a window.
unset DISPLAY WAYLAND_DISPLAY

passed=0
failed=0
why=""
pids=()

# ---- bookkeeping ----------------------------------------------------------------

# check NAME FUNCTION [ARGS...]: runs FUNCTION, which returns non-zero and sets $why
# to fail.
check() {
  local name="$1"
  shift
  why=""
  if "$@"; then
    echo "cross $name: ok"
    passed=$((passed + 1))
  else
    echo "cross $name: FAIL ${why:-no reason given}"
    failed=$((failed + 1))
  fi
}

# fail_all REASON NAME...: the named checks cannot run; each fails with REASON.
fail_all() {
  local reason="$1" name
  shift
  for name in "$@"; do
    echo "cross $name: FAIL $reason"
    failed=$((failed + 1))
  done
}

stop_processes() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

forget_pid() {
  local pid keep=()
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  pids=("${keep[@]}")
}

stop_wine() {
  if [ -d "$WINEPREFIX" ] && [ -x /usr/lib/wine/wineserver ]; then
    timeout 30 /usr/lib/wine/wineserver -k 2>/dev/null || true
    timeout 30 /usr/lib/wine/wineserver -w 2>/dev/null || true
  fi
}

cleanup() {
  stop_processes
  stop_wine
  if [ -n "${KEEP_LOGS:-}" ]; then echo "cross: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# missing_tools CMD-OR-PATH...: sets $why naming the first one missing (with the
# Debian package that has it) and fails.
missing_tools() {
  local t
  for t in "$@"; do
    case "$t" in
      /*) [ -e "$t" ] && continue ;;
      *) command -v "$t" >/dev/null 2>&1 && continue ;;
    esac
    case "$t" in
      "$wine_loader" | /usr/lib/wine/wineserver) why="$t missing (Debian package wine64)" ;;
      x86_64-w64-mingw32-gcc) why="$t missing (Debian package gcc-mingw-w64-x86-64)" ;;
      qemu-aarch64) why="$t missing (Debian package qemu-user)" ;;
      "$arm_sysroot"/*) why="$t missing (Debian package libc6-arm64-cross, with gcc-aarch64-linux-gnu)" ;;
      curl | python3) why="$t missing (Debian package $t)" ;;
      "$native") why="native binary $t missing (cargo build, or set MYCELIUM_BIN)" ;;
      *) why="$t missing (scripts/cross.sh builds it)" ;;
    esac
    return 1
  done
  return 0
}

# ---- running a binary of each kind ------------------------------------------------
#
# A kind is "native", "windows" or "aarch64". Everything runs from $work, so
# relative file names mean the same file to every kind (Wine maps / to drive Z:).

win_dir="$work/windows"

# kind_command KIND: the command line that runs KIND's binary, in $cmd.
kind_command() {
  case "$1" in
    native) cmd=("$native") ;;
    windows) cmd=("$wine_loader" "$win_dir/mycelium.exe") ;;
    aarch64) cmd=(qemu-aarch64 -L "$arm_sysroot" "$arm_bin") ;;
  esac
}

# run_kind KIND ARGS...: runs KIND's binary and waits for it.
run_kind() {
  local cmd
  kind_command "$1"
  shift
  "${cmd[@]}" "$@"
}

# spawn_kind KIND ARGS...: starts KIND's binary in the background; $! is its
# process (not a subshell's), and it joins $pids, stopped on exit.
spawn_kind() {
  local cmd
  kind_command "$1"
  shift
  "${cmd[@]}" "$@" &
  pids+=($!)
}

# Writes the 32-byte key file $work/NAME from 64 hex characters.
write_key() {
  printf '%b' "$(sed 's/../\\x&/g' <<<"$2")" >"$work/$1"
}

# json FIELD: one string field of the JSON object on stdin.
json() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Row N (1-based, header excluded) of the interop vectors: "private public address".
vector() {
  sed -n "$(($1 + 1))p" "$vectors" | tr '\t' ' '
}

# ---- inspect ------------------------------------------------------------------------

# check_inspect_vectors KIND: `inspect --json` with the key files of every eighth
# vector prints that vector's public key and address (four keys: under Wine each
# start costs seconds).
check_inspect_vectors() {
  local kind="$1" n=0 row priv pub addr out got
  [ -r "$vectors" ] || { why="$vectors missing"; return 1; }
  for row in 1 9 17 25; do
    read -r priv pub addr <<<"$(vector "$row")"
    write_key "vector-$row.key" "$priv"
    out="$(run_kind "$kind" -k "vector-$row.key" inspect --json 2>"$work/inspect.err")" || {
      why="inspect of vector $row failed: $(head -c 300 "$work/inspect.err")"
      return 1
    }
    got="$(json publicKey <<<"$out") $(json address <<<"$out")" || {
      why="inspect of vector $row printed no JSON: $(head -c 300 <<<"$out")"
      return 1
    }
    [ "$got" = "$pub $addr" ] || { why="vector $row: got '$got', expected '$pub $addr'"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { why="no vectors read from $vectors"; return 1; }
}

# inspect_agrees KIND KEYFILE [ARGS...]: KIND's `inspect --json` with ARGS names the
# same key as the native binary's inspect of KEYFILE.
inspect_agrees() {
  local kind="$1" file="$2"
  shift 2
  local want got
  want="$(run_kind native -k "$file" inspect --json 2>&1)" || { why="native inspect of $file: $want"; return 1; }
  got="$(run_kind "$kind" "$@" inspect --json 2>&1)" || { why="$kind inspect: $(head -c 300 <<<"$got")"; return 1; }
  [ "$(json publicKey <<<"$got")" = "$(json publicKey <<<"$want")" ] || {
    why="$kind inspect says $(json publicKey <<<"$got"), the key file holds $(json publicKey <<<"$want")"
    return 1
  }
}

# ---- nodes and their APIs -------------------------------------------------------------

declare -A api_port=() node_pid=()

# Every port a node uses comes from one pool of distinct ports, free on every
# address when the run starts (filled by prepare_ports).
port_pool=()
ports=()

prepare_ports() {
  mapfile -t port_pool < <(python3 - <<'EOF'
import socket
held = []
for _ in range(48):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    held.append(s)
    print(s.getsockname()[1])
EOF
  )
  [ "${#port_pool[@]}" -eq 48 ] || { why="could not find free ports (python3)"; return 1; }
}

# take_ports N: the next N ports of the pool, in $ports.
take_ports() {
  ports=("${port_pool[@]:0:$1}")
  port_pool=("${port_pool[@]:$1}")
}

# start_node KIND NAME KEYFILE TCP_PORT [PEER...]: a router-only node on loopback
# with its own API ports, logging to $work/NAME.log.
start_node() {
  local kind="$1" name="$2" key="$3" tcp="$4"
  shift 4
  take_ports 2
  api_port[$name]="${ports[0]}"
  local args=(-k "$key" --no-tun --disable-peer-discovery --disable-quic
    --tcp-listen-port "$tcp" --api-addr "127.0.0.1:${ports[0]}" --jsonrpc-addr "127.0.0.1:${ports[1]}")
  [ "$#" -gt 0 ] && args+=(--peers "$@")
  spawn_kind "$kind" "${args[@]}" >"$work/$name.log" 2>&1
  node_pid[$name]=$!
}

api() { # api NAME PATH [CURL ARGS...]
  local name="$1" path="$2"
  shift 2
  curl -sS --max-time $((timeout_s + 10)) "$@" "http://127.0.0.1:${api_port[$name]}/api/v1$path"
}

log_tail() { tail -n 15 "$work/$1.log" 2>/dev/null | tr '\n' '|' | tail -c 1200; }

# wait_api NAME: until the node answers GET /api/v1/admin.
wait_api() {
  local name="$1" deadline=$((SECONDS + timeout_s))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "${node_pid[$name]}" 2>/dev/null || { why="node $name exited: $(log_tail "$name")"; return 1; }
    api "$name" /admin -f >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  why="node $name's API did not answer within ${timeout_s}s: $(log_tail "$name")"
  return 1
}

# wait_route FROM TO: until FROM's selected routes hold TO's subnet.
wait_route() {
  local from="$1" to="$2" subnet deadline=$((SECONDS + timeout_s))
  subnet="$(api "$to" /admin | json nodeSubnet)" || { why="no subnet from $to's API"; return 1; }
  while [ "$SECONDS" -lt "$deadline" ]; do
    grep -qF "\"subnet\":\"$subnet\"" < <(api "$from" /admin/routes/selected 2>/dev/null) && return 0
    kill -0 "${node_pid[$from]}" 2>/dev/null || { why="node $from exited: $(log_tail "$from")"; return 1; }
    sleep 0.5
  done
  why="$from has no route to $to's subnet $subnet after ${timeout_s}s; $from's peers: $(api "$from" /admin/peers 2>&1 | head -c 600)"
  return 1
}

# send_message FROM TO: a message with a topic of its own and a 5,000-byte payload
# (several chunks) through FROM's API; TO's long poll on that topic must return it
# with FROM as the sender.
send_message() {
  local from="$1" to="$2" topic payload from_pk to_pk code got
  topic="$(printf 'cross %s to %s' "$from" "$to" | base64 -w0)"
  payload="$(head -c 5000 /dev/urandom | base64 -w0)"
  from_pk="$(api "$from" /admin | json nodePubkey)" || { why="no key from $from's API"; return 1; }
  to_pk="$(api "$to" /admin | json nodePubkey)" || { why="no key from $to's API"; return 1; }
  printf '{"dst":{"pk":"%s"},"topic":"%s","payload":"%s"}' "$to_pk" "$topic" "$payload" >"$work/msg.json"
  code="$(api "$from" /messages -o "$work/sent.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @"$work/msg.json")"
  [ "$code" = 201 ] || { why="POST /messages on $from answered $code: $(head -c 300 "$work/sent.json")"; return 1; }
  local query
  query="timeout=$timeout_s&topic=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$topic")"
  code="$(api "$to" "/messages?$query" -o "$work/got.json" -w '%{http_code}')"
  [ "$code" = 200 ] || { why="GET /messages on $to answered $code (nothing from $from within ${timeout_s}s)"; return 1; }
  got="$(json payload <"$work/got.json")"
  [ "$got" = "$payload" ] || { why="$to received another payload than $from sent"; return 1; }
  [ "$(json srcPk <"$work/got.json")" = "$from_pk" ] || { why="$to's message names sender $(json srcPk <"$work/got.json"), not $from"; return 1; }
}

# pair_works A B: each sees the other's subnet and a message passes each way.
pair_works() {
  wait_route "$1" "$2" && wait_route "$2" "$1" && send_message "$1" "$2" && send_message "$2" "$1"
}

# peering KIND: the foreign node X (vector 2's key) with three native ones: A dials X
# at [::1], B at 127.0.0.1, X dials C at 127.0.0.1. No native node dials another, so
# each pair's routes and messages prove that pair's link.
peering() {
  local kind="$1" x="$1" p px pc
  local names=("$kind-tcp-in-ipv6" "$kind-tcp-in-ipv4" "$kind-tcp-out-ipv4")
  take_ports 4
  p=("${ports[@]}")
  px="${p[0]}" pc="${p[1]}"
  local row=2 priv pub addr n
  for n in "$x" A B C; do
    read -r priv pub addr <<<"$(vector "$row")"
    write_key "$n.key" "$priv"
    row=$((row + 1))
  done
  start_node native C C.key "$pc"
  start_node "$kind" "$x" "$x.key" "$px" "tcp://127.0.0.1:$pc"
  start_node native A A.key "${p[2]}" "tcp://[::1]:$px"
  start_node native B B.key "${p[3]}" "tcp://127.0.0.1:$px"
  for n in C "$x" A B; do
    wait_api "$n" || { fail_all "$why" "${names[@]}"; stop_processes; return; }
  done
  check "${names[0]}" pair_works A "$x"
  check "${names[1]}" pair_works B "$x"
  check "${names[2]}" pair_works "$x" C
  stop_processes
}

# ---- Windows only ------------------------------------------------------------------------

# The Known Folders under Wine: drive_c/users/<user>/AppData/{Local,Roaming}.
wine_user_dir() {
  local d=("$WINEPREFIX"/drive_c/users/*/)
  local u
  for u in "${d[@]}"; do
    case "$(basename "$u")" in Public) ;; *) echo "${u%/}"; return 0 ;; esac
  done
  return 1
}

check_generate_keys() {
  rm -f gen.key
  run_kind windows -k gen.key generate-keys >"$work/gen.out" 2>&1 || { why="generate-keys failed: $(head -c 300 "$work/gen.out")"; return 1; }
  [ -f "$work/gen.key" ] || { why="generate-keys wrote no gen.key"; return 1; }
  local size
  size="$(stat -c %s "$work/gen.key")"
  [ "$size" = 32 ] || { why="gen.key holds $size bytes, not 32"; return 1; }
  inspect_agrees windows gen.key -k gen.key
}

check_default_key_path() {
  local user key
  user="$(wine_user_dir)" || { why="no user directory under $WINEPREFIX/drive_c/users"; return 1; }
  key="$user/AppData/Local/ThreeFold Tech/Mycelium/priv_key.bin"
  rm -f "$key"
  run_kind windows generate-keys >"$work/gen.out" 2>&1 || { why="generate-keys without -k failed: $(head -c 300 "$work/gen.out")"; return 1; }
  [ -f "$key" ] || {
    why="no key at ${key#"$WINEPREFIX"/}; key files in the prefix: $(find "$WINEPREFIX/drive_c" -name 'priv_key.bin' | head -3 | tr '\n' ' ')"
    return 1
  }
  # inspect without -k reads the same default file.
  inspect_agrees windows "$key"
}

check_default_config_path() {
  local user dir out
  user="$(wine_user_dir)" || { why="no user directory under $WINEPREFIX/drive_c/users"; return 1; }
  dir="$user/AppData/Roaming/ThreeFold Tech/Mycelium"
  mkdir -p "$dir"
  printf 'api_addr = "127.0.0.1:18123"\ntcp_listen_port = 19123\npeers = ["tcp://127.0.0.1:19124"]\n' >"$dir/mycelium.toml"
  out="$(run_kind windows --print-settings 2>&1)"
  local status=$?
  rm -f "$dir/mycelium.toml"
  [ "$status" -eq 0 ] || { why="--print-settings failed: $(head -c 300 <<<"$out")"; return 1; }
  python3 - "$out" <<'EOF' || { why="the config in RoamingAppData was not applied: $(head -c 400 <<<"$out")"; return 1; }
import json, sys
s = json.loads(sys.argv[1])
assert s["api_addr"] == "127.0.0.1:18123", s["api_addr"]
assert s["tcp_listen_port"] == 19123, s["tcp_listen_port"]
assert s["peers"] == ["tcp://127.0.0.1:19124"], s["peers"]
EOF
}

# Without --no-tun and with no wintun.dll anywhere: exit status 1 and stderr naming
# wintun.dll, before any listener or API starts.
check_wintun_missing() {
  local p status
  take_ports 3
  p=("${ports[@]}")
  spawn_kind windows -k gen.key --disable-peer-discovery --disable-quic --tcp-listen-port "${p[0]}" \
    --api-addr "127.0.0.1:${p[1]}" --jsonrpc-addr "127.0.0.1:${p[2]}" \
    >"$work/wintun.out" 2>"$work/wintun.err"
  local pid=$!
  local deadline=$((SECONDS + timeout_s))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    why="still running after ${timeout_s}s: $(tail -c 300 "$work/wintun.err")"
    stop_processes
    return 1
  fi
  wait "$pid"
  status=$?
  forget_pid "$pid"
  [ "$status" -eq 1 ] || { why="exit status $status, not 1: $(tail -c 300 "$work/wintun.err")"; return 1; }
  grep -qi 'wintun\.dll' "$work/wintun.err" || { why="stderr does not name wintun.dll: $(tail -c 300 "$work/wintun.err")"; return 1; }
}

# A fresh prefix, a copy of the .exe and the ProcessPrng shim beside it.
prepare_wine() {
  missing_tools curl python3 "$native" "$wine_loader" /usr/lib/wine/wineserver x86_64-w64-mingw32-gcc "$win_exe" || return 1
  mkdir -p "$win_dir"
  cp "$win_exe" "$win_dir/mycelium.exe"
  x86_64-w64-mingw32-gcc -shared -O2 -o "$win_dir/bcryptprimitives.dll" "$here/bcryptprimitives.c" -ladvapi32 \
    2>"$work/shim.err" || { why="building the ProcessPrng shim failed: $(head -c 300 "$work/shim.err")"; return 1; }
  timeout 300 "$wine_loader" wineboot --init >"$work/wineboot.log" 2>&1
  timeout 120 /usr/lib/wine/wineserver -w
  [ -d "$WINEPREFIX/drive_c/users" ] || { why="wineboot made no prefix: $(tail -c 300 "$work/wineboot.log")"; return 1; }
}

prepare_aarch64() {
  missing_tools curl python3 "$native" qemu-aarch64 "$arm_sysroot/lib/ld-linux-aarch64.so.1" "$arm_bin"
}

# ---- the checks ---------------------------------------------------------------------------

cd "$work" || exit 1

win_checks=(windows-inspect windows-generate-keys windows-default-key-path windows-default-config-path
  windows-wintun-missing windows-tcp-in-ipv6 windows-tcp-in-ipv4 windows-tcp-out-ipv4)
arm_checks=(aarch64-inspect aarch64-tcp-in-ipv6 aarch64-tcp-in-ipv4 aarch64-tcp-out-ipv4)
if ! prepare_ports; then
  fail_all "$why" "${win_checks[@]}" "${arm_checks[@]}"
  echo "cross: $passed passed, $failed failed"
  exit 1
fi

if prepare_wine; then
  check windows-inspect check_inspect_vectors windows
  check windows-generate-keys check_generate_keys
  check windows-default-key-path check_default_key_path
  check windows-default-config-path check_default_config_path
  check windows-wintun-missing check_wintun_missing
  peering windows
else
  fail_all "$why" "${win_checks[@]}"
fi
stop_wine

if prepare_aarch64; then
  check aarch64-inspect check_inspect_vectors aarch64
  peering aarch64
else
  fail_all "$why" "${arm_checks[@]}"
fi

echo "cross: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
