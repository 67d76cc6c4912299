#!/usr/bin/env bash
# The Debian package, built and installed as a user would: `cargo deb` makes it,
# dpkg installs it, and the installed node is started with its systemd unit's own
# command line (ExecStart) inside a network namespace made here, since systemd may
# not run on a CI machine. Checks:
#   1. the package holds the binary, the unit, the settings file (a conffile) and
#      the separate debug file, and installs;
#   2. `systemd-analyze verify` finds nothing wrong with the installed unit;
#   3. the unit's command line starts the installed binary: its API answers, its
#      TUN device carries its overlay address, it dials no one (the settings file
#      lists no peers), and SIGTERM stops it cleanly;
#   4. the package removes and purges cleanly.
# Ends with "package: N passed, N failed". Needs root, cargo-deb (scripts/setup.sh
# --deps installs it), dpkg, systemd-analyze, iproute2 and curl.
set -uo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
# Output is searched with `grep -q PATTERN < <(COMMAND)`, never `COMMAND | grep -q`:
# under pipefail, a command still writing when grep has matched and quit dies of
# SIGPIPE and fails the check (`ip addr` writes the TUN's link-local address after
# its overlay address, and lost that race once in CI).
check() { # check NAME COMMAND...: runs the command, counts and reports it
  local name=$1
  shift
  if "$@"; then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAILED: $name"
    failed=$((failed + 1))
  fi
}
finish() {
  echo "package: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

for tool in cargo-deb dpkg systemd-analyze ip curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool is missing (scripts/setup.sh --deps installs the test tools)" >&2
    failed=$((failed + 1))
    finish
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: needs root (dpkg -i, network namespaces)" >&2
  failed=$((failed + 1))
  finish
fi

ns="mpkg$$"
work="$(mktemp -d /tmp/package-test.XXXXXX)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  dpkg --purge mycelium >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

echo "== cargo deb"
if ! cargo deb --locked -p mycelium-cli --output "$work/" >"$work/deb.log" 2>&1; then
  cat "$work/deb.log"
  failed=$((failed + 1))
  finish
fi
deb="$(ls "$work"/mycelium_*.deb)"
echo "$deb: $(du -h "$deb" | cut -f1)"

contents() {
  dpkg-deb -c "$deb" >"$work/contents" &&
    for f in ./usr/bin/mycelium ./lib/systemd/system/mycelium.service \
      ./etc/mycelium/mycelium.toml ./usr/share/doc/mycelium/copyright; do
      grep -q " $f\$" "$work/contents" || { echo "  missing: $f"; return 1; }
    done &&
    grep -q ' ./usr/lib/debug/.*\.debug$' "$work/contents" &&
    grep -qx /etc/mycelium/mycelium.toml < <(dpkg-deb -I "$deb" conffiles)
}
check "the package holds the binary, the unit, the settings file (conffile) and the debug file" contents
stripped() { # the installed binary carries no debug sections of its own
  local sections
  sections="$(readelf -S /usr/bin/mycelium)" && ! grep -q '\.debug_line' <<<"$sections"
}
check "dpkg installs it" dpkg -i "$deb"
check "the installed binary is stripped" stripped
check "the installed binary runs" /usr/bin/mycelium --version

verify() {
  systemd-analyze verify /lib/systemd/system/mycelium.service >"$work/verify.log" 2>&1
  local status=$?
  cat "$work/verify.log"
  # Any complaint about the unit counts, not only errors.
  [ "$status" -eq 0 ] && ! grep -q 'mycelium.service' "$work/verify.log"
}
check "systemd-analyze verify finds nothing wrong with the unit" verify

# The unit's own command line, as systemd would run it.
execstart="$(sed -n 's/^ExecStart=//p' /lib/systemd/system/mycelium.service)"
echo "ExecStart: $execstart"
state="$(sed -n 's/^StateDirectory=//p' /lib/systemd/system/mycelium.service)"
made_state=""
if [ ! -d "/var/lib/$state" ]; then
  mkdir -m 700 "/var/lib/$state" && made_state=1
fi
ip netns add "$ns"
ip -n "$ns" link set lo up
# shellcheck disable=SC2086 # the command line splits into words as systemd splits it
ip netns exec "$ns" $execstart >"$work/node.log" 2>&1 &
pid=$!
api_up() {
  local i
  for i in $(seq 100); do
    ip netns exec "$ns" curl -sf --max-time 1 http://127.0.0.1:8989/api/v1/admin >"$work/admin.json" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
check "the unit's command line starts the node and its API answers" api_up
tun_up() {
  local addr
  addr="$(sed -n 's/.*"nodeIp":"\([0-9a-f:]*\)".*/\1/p' "$work/admin.json")"
  echo "  overlay address: $addr"
  [ -n "$addr" ] && grep -q "inet6 $addr/" < <(ip -n "$ns" -6 addr show dev mycelium)
}
check "its TUN device (mycelium) carries the node's overlay address" tun_up
no_peers() {
  local peers
  peers="$(ip netns exec "$ns" curl -sf --max-time 2 http://127.0.0.1:8989/api/v1/admin/peers)"
  echo "  peers: $peers"
  [ "$peers" = "[]" ]
}
check "the packaged settings dial no one" no_peers
stops() {
  kill -TERM "$pid"
  local i
  for i in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      local status=$?
      pid=""
      [ "$status" -eq 0 ]
      return
    fi
    sleep 0.1
  done
  return 1
}
check "SIGTERM stops it within 10 s with status 0" stops
key_kept() { [ -s "/var/lib/$state/priv_key.bin" ]; }
check "its key is kept in the unit's state directory" key_kept
if [ -n "$made_state" ]; then rm -rf "/var/lib/${state:?}"; fi
if [ -n "$pid" ] || [ "$failed" -ne 0 ]; then
  echo "---- node log ----"
  cat "$work/node.log"
fi

check "dpkg removes it" dpkg -r mycelium
check "dpkg purges it, settings file included" sh -c 'dpkg --purge mycelium && [ ! -e /etc/mycelium/mycelium.toml ] && [ ! -e /usr/bin/mycelium ]'
finish
