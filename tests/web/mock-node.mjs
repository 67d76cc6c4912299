// Two pretend nodes, A and B, peered to each other, each answering the HTTP API
// with canned data and serving crates/api/web/index.html at `/`.
// A message POSTed to one lands in the other's inbox, and counts in the byte
// counters of the link between them. Used when no real node is
// given, and for the bearer-token check, which a real node may not support.
//
// Run alone (`node mock-node.mjs [--token T]`) it prints the two base URLs and
// serves until killed. WEBVIEW_MOCK_NO_MESSAGES=1 makes the message routes answer
// as a node without a message bus does (503), to see the test skip loudly.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";

const PAGE = fileURLToPath(new URL("../../crates/api/web/index.html", import.meta.url));

/** The Content-Security-Policy we suggest the API serves the page with. */
export const PAGE_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
  "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const IDENTITIES = {
  a: {
    nodeSubnet: "595:178f:8073:5d22::/64",
    nodeIp: "595:178f:8073:5d22:eb75:e266:e04c:d8ae",
    nodePubkey: "16ef80940f5e8757b26c8be140d52ac847c7cfda3c08a307f55be6a0aeac8745",
  },
  b: {
    nodeSubnet: "5e4:42a4:26f:d028::/64",
    nodeIp: "5e4:42a4:26f:d028:5f57:fa72:18b4:4702",
    nodePubkey: "039cd72b71f1553d1140b49812f64f8c9873b3c97a470b9ab1c1ea2377bbe701",
  },
};

function makeNode(name, other, tcpPort) {
  const started = Math.floor(Date.now() / 1000) - 3725;
  const me = IDENTITIES[name];
  const them = IDENTITIES[other];
  const peers =
    name === "a"
      ? [{ endpoint: { proto: "tcp", addr: { socket: "[::ffff:127.0.0.1]:41234" } }, type: "inbound" }]
      : [{ endpoint: { proto: "tcp", addr: { socket: `127.0.0.1:${tcpPort}` } }, type: "static" }];
  // The link as each side names it: A listens on tcpPort, B dialled it from 41234.
  const nextHop = name === "a"
    ? `TCP 127.0.0.1:${tcpPort} <-> 127.0.0.1:41234`
    : `TCP 127.0.0.1:41234 <-> 127.0.0.1:${tcpPort}`;
  return {
    info: { ...me, nodeStartTime: started },
    peers: peers.map((p) => ({ ...p, connectionState: "alive", txBytes: 183_204, rxBytes: 2_519_877, discovered: 3725, lastConnected: 3720 })),
    selected: [{ subnet: them.nodeSubnet, nextHop, metric: 0, seqno: 3 }],
    fallback: [{ subnet: "4ca:ba1e:3619:318e::/64", nextHop, metric: "infinite", seqno: 1 }],
    queried: [{ subnet: "5ff:1:2:3::/64", expiration: "14" }],
    stats: {
      bySource: [{ ip: me.nodeIp, packetCount: 12, byteCount: 4_380 }],
      byDestination: [{ ip: them.nodeIp, packetCount: 12, byteCount: 4_380 }],
    },
    inbox: [],
    waiters: [],
    /** Outbound message states by id (MessageInfo). */
    statuses: new Map(),
  };
}

function send(res, status, body, type = "application/json") {
  const text = body === undefined ? "" : type === "application/json" ? JSON.stringify(body) : body;
  res.writeHead(status, text ? { "Content-Type": type } : {});
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function parseEndpoint(text) {
  const m = /^(tcp|quic|tls):\/\/(.+:\d+)$/.exec(text);
  if (!m) return null;
  return { proto: m[1], addr: { socket: m[2] } };
}

const SENDER_STATUS = Symbol("sender status");

/** Hands a message out: marks it read at its sender; the symbol key is not serialised. */
function handOut(message) {
  message[SENDER_STATUS].state = "read";
  return message;
}

function deliver(node, message) {
  const waiter = node.waiters.shift();
  if (waiter) waiter(message);
  else node.inbox.push(message);
}

async function handle(nodes, name, token, req, res) {
  const node = nodes[name];
  const url = new URL(req.url, "http://mock");
  const path = url.pathname;
  if (path === "/" && req.method === "GET") {
    // The strictest policy the page works under: the test proves it does.
    res.setHeader("Content-Security-Policy", PAGE_CSP);
    send(res, 200, await readFile(PAGE, "utf8"), "text/html; charset=utf-8");
    return;
  }
  if (token && req.headers.authorization !== `Bearer ${token}`) {
    send(res, 401, undefined);
    return;
  }
  const needJson = () => {
    if (!String(req.headers["content-type"] || "").startsWith("application/json")) {
      send(res, 415, "Expected request with `Content-Type: application/json`", "text/plain; charset=utf-8");
      return false;
    }
    return true;
  };
  const route = `${req.method} ${path}`;
  if (process.env.WEBVIEW_MOCK_NO_MESSAGES && path === "/api/v1/messages") {
    // What the API crate answers while the node's message bus is not running.
    return send(res, 503, { error: "message subsystem unavailable: not wired in" });
  }
  switch (route) {
    case "GET /api/v1/admin": return send(res, 200, node.info);
    case "GET /api/v1/admin/peers": return send(res, 200, node.peers);
    case "GET /api/v1/admin/routes/selected": return send(res, 200, node.selected);
    case "GET /api/v1/admin/routes/fallback": return send(res, 200, node.fallback);
    case "GET /api/v1/admin/routes/queried": return send(res, 200, node.queried);
    case "GET /api/v1/admin/stats/packets": return send(res, 200, node.stats);
    case "POST /api/v1/admin/peers": {
      if (!needJson()) return;
      const body = JSON.parse(await readBody(req));
      const endpoint = parseEndpoint(body.endpoint);
      if (!endpoint) return send(res, 400, "missing leading protocol identifier", "text/plain; charset=utf-8");
      if (node.peers.some((p) => JSON.stringify(p.endpoint) === JSON.stringify(endpoint))) {
        return send(res, 409, "A peer identified by that endpoint already exists", "text/plain; charset=utf-8");
      }
      node.peers.push({ endpoint, type: "static", connectionState: "connecting", txBytes: 0, rxBytes: 0, discovered: 0, lastConnected: null });
      return send(res, 204, undefined);
    }
    case "POST /api/v1/messages": {
      if (!needJson()) return;
      const body = JSON.parse(await readBody(req));
      const target = Object.entries(nodes).find(
        ([, n]) => n.info.nodeIp === body.dst?.ip || n.info.nodePubkey === body.dst?.pk,
      );
      const id = randomBytes(8).toString("hex");
      const created = Math.floor(Date.now() / 1000);
      const status = { dst: body.dst?.ip || target?.[1].info.nodeIp, state: "pending", created, deadline: created + 300, msgLen: Buffer.from(body.payload, "base64").length };
      node.statuses.set(id, status);
      if (target) {
        if (target[1] !== node) {
          // The bytes cross the link between the two: its counters on both sides grow.
          const bytes = status.msgLen + 64;
          for (const peer of node.peers.filter((p) => p.connectionState === "alive")) peer.txBytes += bytes;
          for (const peer of target[1].peers.filter((p) => p.connectionState === "alive")) peer.rxBytes += bytes;
        }
        const message = {
          id,
          srcIp: node.info.nodeIp, srcPk: node.info.nodePubkey,
          dstIp: target[1].info.nodeIp, dstPk: target[1].info.nodePubkey,
          ...(body.topic ? { topic: body.topic } : {}),
          payload: body.payload,
          // The receiver marks it read when it hands it out.
          [SENDER_STATUS]: status,
        };
        setTimeout(() => { status.state = "received"; deliver(target[1], message); }, 300);
      }
      return send(res, 201, { id });
    }
    case "GET /api/v1/messages": {
      const timeout = Math.min(Number(url.searchParams.get("timeout") || 0), 60);
      const topic = url.searchParams.get("topic");
      const matches = (m) => !topic || m.topic === topic;
      const i = node.inbox.findIndex(matches);
      if (i >= 0) return send(res, 200, handOut(node.inbox.splice(i, 1)[0]));
      if (timeout === 0) return send(res, 204, undefined);
      const message = await new Promise((resolve) => {
        const waiter = (m) => resolve(m);
        node.waiters.push(waiter);
        setTimeout(() => {
          const at = node.waiters.indexOf(waiter);
          if (at >= 0) node.waiters.splice(at, 1);
          resolve(null);
        }, timeout * 1000);
      });
      return message ? send(res, 200, handOut(message)) : send(res, 204, undefined);
    }
    default:
      break;
  }
  const status = /^\/api\/v1\/messages\/status\/([^/]*)$/.exec(path);
  if (status && req.method === "GET") {
    if (!/^[0-9a-f]{16}$/i.test(status[1])) return send(res, 400, undefined);
    const info = node.statuses.get(status[1].toLowerCase());
    return info ? send(res, 200, info) : send(res, 404, undefined);
  }
  const del = /^\/api\/v1\/admin\/peers\/(.+)$/.exec(path);
  if (del && req.method === "DELETE") {
    const endpoint = parseEndpoint(decodeURIComponent(del[1]));
    if (!endpoint) return send(res, 400, "missing leading protocol identifier", "text/plain; charset=utf-8");
    const at = node.peers.findIndex((p) => JSON.stringify(p.endpoint) === JSON.stringify(endpoint));
    if (at < 0) return send(res, 404, "A peer identified by that endpoint does not exist", "text/plain; charset=utf-8");
    node.peers.splice(at, 1);
    return send(res, 204, undefined);
  }
  return send(res, 404, undefined);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}

/** Starts nodes A and B; resolves to their base URLs and a close function. */
export async function startMockPair({ token } = {}) {
  const tcpPort = 9651;
  const nodes = { a: makeNode("a", "b", tcpPort), b: makeNode("b", "a", tcpPort) };
  const servers = ["a", "b"].map((name) =>
    createServer((req, res) => {
      handle(nodes, name, token, req, res).catch((err) => {
        if (!res.headersSent) send(res, 400, String(err), "text/plain; charset=utf-8");
      });
    }),
  );
  const [portA, portB] = await Promise.all(servers.map(listen));
  return {
    a: `http://127.0.0.1:${portA}`,
    b: `http://127.0.0.1:${portB}`,
    close: () => Promise.all(servers.map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); }))),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf("--token");
  const pair = await startMockPair({ token: at > 0 ? process.argv[at + 1] : undefined });
  console.log(`A ${pair.a}\nB ${pair.b}`);
}
