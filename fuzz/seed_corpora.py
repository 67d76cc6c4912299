#!/usr/bin/env python3
"""Writes the seed corpora of the message_bus, topic_config and api_json targets.

    python3 fuzz/seed_corpora.py            (from the repository root)

message_bus seeds are operation scripts (see fuzz_targets/message_bus.rs): whole
exchanges driven by playing the bus's own frames back to it, and the recorded
upstream message frames (corpus/message_frame) fed in as they are. topic_config
seeds are upstream's example frames; api_json seeds are the API's example bodies and
the recorded upstream answers (the repository's interop fixtures).
"""
import hashlib
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The answers recorded from upstream nodes, as the proto crate's tests keep them.
INTEROP = os.path.join(REPO, "crates/proto/tests/fixtures/interop/tcp-session")
# Upstream's example configuration, as the API crate's tests keep it.
UPSTREAM_CONFIG = os.path.join(REPO, "crates/api/tests/fixtures/upstream/config_example.toml")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.blake2b(data, digest_size=8).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ----- message_bus: setup byte, then operations -------------------------------
def push(sel, length):
    return bytes([5, sel]) + struct.pack(">H", length)


def reflect(sel=0):
    return bytes([2, sel, 0, 0])


def step(b):
    return bytes([4, b])


def pop(sel=0):
    return bytes([6, sel])


def frame(sel, data):
    return bytes([0, sel]) + struct.pack(">H", len(data)) + data


# One 100-byte message to PEERS[0], untopiced, played back to completion, read.
put("message_bus", bytes([0]) + push(0x30, 100) + reflect() * 8 + pop() + reflect() + step(250))
# 3000 bytes: three chunks in one window.
put("message_bus", bytes([0]) + push(0x30, 3000) + reflect() * 16 + pop() + reflect() + step(10))
# Two messages interleaved, one on topic "t", plus time steps between.
put("message_bus", bytes([2]) + push(0x00, 700) + push(0x31, 5000)
    + (reflect() + step(20)) * 12 + pop(2) + pop(0) + reflect() * 2)
# Forward socket: topic "f" from PEERS[2], answered with a reply.
put("message_bus", bytes([4]) + push(0x11, 300) + reflect() * 8 + bytes([8, 0, 40]) + reflect() * 6)
# Reply wait: push, wait for a reply, the peer's reply (playing back our own
# reply to our own message), take it.
put("message_bus", bytes([0]) + push(0x30, 50) + bytes([7, 0]) + push(0x38, 60)
    + reflect() * 16 + bytes([7, 2]))
# Lost frames: everything times out and is aborted.
put("message_bus", bytes([0]) + push(0x34 | 0x03, 2000) + step(100) * 5 + step(210) + step(255))
# Recorded upstream frames from one source.
frames_dir = os.path.join(ROOT, "message_frame")
recorded = sorted(os.listdir(frames_dir)) if os.path.isdir(frames_dir) else []
script = bytes([0])
for name in recorded[:24]:
    with open(os.path.join(frames_dir, name), "rb") as f:
        data = f.read()
    put("message_bus", bytes([0]) + frame(0, data) + step(10))
    script += frame(0, data)
put("message_bus", script + pop())

# ----- topic_config ----------------------------------------------------------
put("topic_config", """# Action for topics that are not listed below.
default = "Reject"

[chat]
subnets = ["400::/7"]
forward_socket = "/run/myapp/chat.sock"

["sensor.readings"]
subnets = ["5a6:f0c6:f365:177d::/64", "4a1:acf3:2837:d9cf:d930:4520:c759:467b"]
""")
put("topic_config", 'default = "Accept"\n')
put("topic_config", 'old = ["400::/7", "10.0.0.1"]\n')
put("topic_config", '[empty]\n\n[x]\nsubnets = []\nunknown = 1\n')
put("topic_config", 'default = "accept"\n')

# ----- api_json: selector byte (see fuzz_targets/api_json.rs), then JSON ------
def api(sel, text):
    put("api_json", bytes([sel]) + text.encode())


api(0, '{"dst":{"ip":"4ca:ba1e:3619:318e::1"},"topic":"bXl0b3BpYw==","payload":"aGVsbG8="}')
api(0, '{"dst":{"pk":"3db508c4edc6f9730edb742a7ca8544963be2eeff84ef12c1554fb3535d80d1b"},"topic":null,"payload":""}')
api(1, '{"endpoint":"tcp://1.2.3.4:9651"}')
api(2, '{"socketPath":"/run/app.sock"}')
api(3, '{"subnet":"400::/7"}')
api(4, '{"accept":false}')
api(5, '{"remote":"[407::1]:1080"}')
api(5, '{}')
receive = ('{"id":"2bb231c50d01428d","srcIp":"466:b442:ba3f:5851:cfce:a76d:c40d:96bb",'
           '"srcPk":"3db508c4edc6f9730edb742a7ca8544963be2eeff84ef12c1554fb3535d80d1b",'
           '"dstIp":"54f:3b2d:c56e:1588:4af0:300a:83fc:2f50",'
           '"dstPk":"6e7dbb9af5af53a144a5f60c52390cf806f475632dfbada42982747d9f001631",'
           '"topic":"bXl0b3BpYw==","payload":"aGVsbG8gd29ybGQ="}')
api(6, receive)
api(7, receive)
api(7, '{"id":"2bb231c50d01428d"}')
api(8, '{"id":"2bb231c50d01428d"}')
api(9, '{"dst":"4ca:ba1e:3619:318e:5f23:99d1:47a:e72a","state":"received","created":1795558915,"deadline":1795559215,"msgLen":2}')
api(9, '{"dst":"4ca::1","state":{"sending":{"pending":0,"sent":1,"acked":2}},"created":1,"deadline":301,"msgLen":3000}')
api(10, '[{"endpoint":{"proto":"vsock","addr":{"vsock":{"cid":3,"port":9651}}},"type":"static","connectionState":"dead","txBytes":0,"rxBytes":0,"discovered":1,"lastConnected":null}]')
api(11, '[{"subnet":"5e4:42a4:26f:d028::/64","nextHop":"TCP [fd00:78::1]:9651 <-> [fd00:78::2]:60758","metric":"infinite","seqno":3}]')
api(12, '[{"subnet":"5e4:42a4:26f:d028::/64","expiration":"5"}]')
api(13, '{"bySource":[{"ip":"54f:3b2d:c56e:1588::","packetCount":3,"byteCount":380}],"byDestination":[]}')
api(15, '[0, 65534, 65535, "infinite"]')
for sel, name in [(14, "listener_admin.json"), (10, "listener_peers.json"),
                  (11, "listener_routes_selected.json")]:
    p = os.path.join(INTEROP, name)
    if os.path.exists(p):
        with open(p) as f:
            api(sel, f.read().strip())
p = os.path.join(INTEROP, "messages_received_by_listener.jsonl")
if os.path.exists(p):
    with open(p) as f:
        for line in f.read().splitlines()[:3]:
            if len(line) < 4096:
                api(6, line)

# ----- text_parsers: selector byte (see fuzz_targets/text_parsers.rs), then text --
def text(sel, t):
    put("text_parsers", bytes([sel]) + t.encode())


for ep in ["tcp://1.2.3.4:9651", "quic://[2a01:4f8:212:fa6::2]:9651", "TLS://[::1]:1",
           "vsock://3:9651", "tcp://[fe80::1%2]:9651", "udp://1.2.3.4:1", "tcp//x"]:
    text(0, ep)
for va in ["2:9651", "4294967295:0", "1:2:3"]:
    text(1, va)
for sn in ["400::/7", "5a6:f0c6:f365:177d::/64", "4a1:acf3:2837:d9cf:d930:4520:c759:467b",
           "10.0.0.0/8", "::/0", "400::1/129"]:
    text(2, sn)
text(3, "3db508c4edc6f9730edb742a7ca8544963be2eeff84ef12c1554fb3535d80d1b")
text(4, "2bb231c50d01428d")
text(4, "2BB231C50D01428D")


def interop_json(name):
    p = os.path.join(INTEROP, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return f.read()


# The recorded upstream answers hold real endpoints, subnets, keys and ids.
admin = interop_json("listener_admin.json")
if admin:
    a = json.loads(admin)
    text(2, a["nodeSubnet"])
    text(3, a["nodePubkey"])
peers = interop_json("listener_peers.json")
if peers:
    for p in json.loads(peers):
        addr = p["endpoint"]["addr"]
        if "socket" in addr:
            text(0, p["endpoint"]["proto"] + "://" + addr["socket"])
routes = interop_json("listener_routes_selected.json")
if routes:
    for r in json.loads(routes):
        text(2, r["subnet"])
received = interop_json("messages_received_by_listener.jsonl")
if received:
    for line in received.splitlines()[:3]:
        m = json.loads(line)
        text(4, m["id"])
        text(3, m["srcPk"])

# ----- cli_config: config files ------------------------------------------
for path in [UPSTREAM_CONFIG]:
    if os.path.exists(path):
        with open(path, "rb") as f:
            put("cli_config", f.read())
put("cli_config", 'peers = ["tcp://1.2.3.4:9651", "quic://[2001:db8::1]:9651"]\n'
    'tcp_listen_port = 9651\nquic_listen_port = 9651\ndisable_quic = false\n'
    'api_addr = "127.0.0.1:8989"\njsonrpc_addr = "127.0.0.1:8990"\n'
    'update_workers = 4\nmax_routes = 1000\nmax_routes_per_peer = 100\n'
    'max_inbound_peers = 10\nmax_connections_per_second = 5\n'
    'link_data_queue = 64\nlink_control_rate = 100\n')
put("cli_config", 'peers = "vsock://3:9651"\nno_tun = true\ntun_name = "myc0"\n'
    'peer_discovery_interfaces = ["eth0"]\nfirewall_mark = 7\nunknown = 1\n')
put("cli_config", 'network_name = "net"\nnetwork_key_file = "/k"\nupdate_workers = 0\n')

# ----- api_http: REST operations and JSON-RPC calls (see fuzz_targets/api_http.rs) --
def piece(b):
    if isinstance(b, str):
        b = b.encode()
    return bytes([len(b)]) + b


REST = [  # (operation index in OPERATIONS, path parameters, query, body)
    (0, [], "", ""), (1, [], "", ""),
    (2, [], "", '{"endpoint":"tcp://1.2.3.4:9651"}'),
    (3, ["tcp://192.0.2.1:9651"], "", ""),
    (4, [], "", ""), (5, [], "", ""), (6, [], "", ""), (7, [], "", ""),
    (8, [], "", '{"remote":"[407::1]:1080"}'), (9, [], "", ""), (10, [], "", ""),
    (11, [], "", ""), (12, [], "", ""),
    (13, [], "peek=true&timeout=5&topic=dGVzdA==", ""),
    (14, [], "reply_timeout=2",
     '{"dst":{"ip":"4ca:ba1e:3619:318e::1"},"topic":"dGVzdA==","payload":"aGVsbG8="}'),
    (15, ["2bb231c50d01428d"], "", '{"dst":{"pk":"3db508c4edc6f9730edb742a7ca8544963be2eeff84ef12c1554fb3535d80d1b"},"payload":""}'),
    (16, ["2bb231c50d014200"], "", ""),
    (17, [], "", ""), (18, [], "", '{"accept":false}'), (19, [], "", ""),
    (20, [], "", '"dGVzdA=="'), (21, ["dGVzdA=="], "", ""), (22, ["dGVzdA=="], "", ""),
    (23, ["dGVzdA=="], "", '{"subnet":"400::/7"}'),
    (24, ["dGVzdA==", "400::/7"], "", ""), (25, ["dGVzdA=="], "", ""),
    (26, ["dGVzdA=="], "", '{"socketPath":"/run/app.sock"}'), (27, ["dGVzdA=="], "", ""),
    (28, ["5e4:42a4:26f:d028::1"], "", ""),
]
for op, params, query, body in REST:
    put("api_http", bytes([0, op, 0]) + b"".join(piece(p) for p in params) + piece(query)
        + b"\x00" + body.encode())
RPC = [  # (method index in METHODS, params)
    (0, "[]"), (1, '["5e4:42a4:26f:d028::1"]'), (2, "[]"), (3, '["tcp://1.2.3.4:9651"]'),
    (4, '{"endpoint":"tcp://192.0.2.1:9651"}'), (5, "[]"), (9, '["[407::1]:1080"]'),
    (14, "[]"), (15, '[true, 1, "dGVzdA=="]'),
    (16, '[{"dst":{"ip":"4ca:ba1e:3619:318e::1"},"payload":"aGVsbG8="}, 1]'),
    (17, '["2bb231c50d01428d", {"dst":{"ip":"4ca::1"},"payload":""}]'),
    (18, '["2bb231c50d014200"]'), (20, "[false]"), (22, '["dGVzdA=="]'),
    (25, '["dGVzdA==", "400::/7"]'), (28, '["dGVzdA==", "/run/a.sock"]'),
]
for m, params in RPC:
    put("api_http", bytes([1, m]) + params.encode())
put("api_http", bytes([1, 255]) + b'[{"jsonrpc":"2.0","id":1,"method":"getInfo"},{"jsonrpc":"2.0","method":"getPeers"}]')
