// The node's web view (crates/api/web/index.html) in headless Chromium, checked
// against what the node's API says.
//
// Nodes under test, by base URL:
//   WEBVIEW_NODE_A  node A (required unless both are left unset)
//   WEBVIEW_NODE_B  node B, peered with A (optional: the cross-node checks skip)
//   WEBVIEW_A_ENDPOINT  the endpoint B was told to dial A at, e.g. tcp://127.0.0.1:9651
// With neither set, the test runs against two pretend nodes (mock-node.mjs).
//   WEBVIEW_TOKEN_NODE, WEBVIEW_TOKEN  a node that demands this bearer token; without
//                   them the token check runs against a pretend node.
//
// WEBVIEW_SCREENSHOT (default /tmp/webview.png): where node A's page is captured.
// WEBVIEW_CONVERGE_MS (default 20000): how long to wait for peers and routes.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { inflateSync } from "node:zlib";
import { chromium } from "playwright-core";
import { startMockPair } from "./mock-node.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT = process.env.WEBVIEW_SCREENSHOT || "/tmp/webview.png";
const CONVERGE_MS = Number(process.env.WEBVIEW_CONVERGE_MS || 20000);

let mock = null;
let nodeA = process.env.WEBVIEW_NODE_A;
let nodeB = process.env.WEBVIEW_NODE_B;
let aEndpoint = process.env.WEBVIEW_A_ENDPOINT;
let profile;
let context;
const pages = {};
/** Every URL any page asked for, to prove the page loads nothing from outside. */
const requested = [];
/** Script errors and console errors (CSP violations among them) of every page. */
const pageErrors = [];

function watch(page, base) {
  page.on("request", (req) => requested.push(req.url()));
  page.on("pageerror", (err) => pageErrors.push(`${base}: ${err.message}`));
  page.on("console", (msg) => {
    // Chromium logs every non-2xx answer this way; the tests cause some on purpose.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      pageErrors.push(`${base}: console: ${msg.text()}`);
    }
  });
}

// ---------------------------------------------------------------- helpers

async function getJson(base, path) {
  const res = await fetch(base + path, { headers: { Accept: "application/json" } });
  assert.equal(res.status, 200, `GET ${path} on ${base}`);
  return res.json();
}

/** Retries `check` until it stops throwing, for at most `ms`; rethrows the last failure. */
async function eventually(what, check, ms = CONVERGE_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      last.message = `${what}: still failing after ${ms} ms: ${last.message}`;
      throw last;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The endpoint in the URI form the page shows (and `--peers` takes). */
function endpointUri(endpoint) {
  if (endpoint.addr.socket) return `${endpoint.proto}://${endpoint.addr.socket}`;
  return `${endpoint.proto}://${endpoint.addr.vsock.cid}:${endpoint.addr.vsock.port}`;
}

async function postJson(base, path, body) {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.text() };
}

/** Decodes a PNG as Chromium writes it (8-bit RGB or RGBA, not interlaced) into RGBA pixels. */
function decodePng(png) {
  assert.equal(png.subarray(0, 8).toString("hex"), "89504e470d0a1a0a", "not a PNG");
  let width = 0;
  let height = 0;
  let channels = 0;
  const data = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      assert.ok(depth === 8 && (colour === 2 || colour === 6) && interlace === 0,
        `unexpected PNG format: depth ${depth}, colour type ${colour}, interlace ${interlace}`);
      channels = colour === 6 ? 4 : 3;
    } else if (type === "IDAT") {
      data.push(body);
    }
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y += 1) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let x = 0; x < stride; x += 1) {
      const a = x >= channels ? out[row + x - channels] : 0;
      const b = y > 0 ? out[row - stride + x] : 0;
      const c = x >= channels && y > 0 ? out[row - stride + x - channels] : 0;
      let predicted = 0;
      if (filter === 1) predicted = a;
      else if (filter === 2) predicted = b;
      else if (filter === 3) predicted = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else assert.equal(filter, 0, `PNG filter ${filter}`);
      out[row + x] = (line[x] + predicted) & 0xff;
    }
  }
  const pixel = (x, y) => {
    const i = y * stride + x * channels;
    return [out[i], out[i + 1], out[i + 2]];
  };
  return { width, height, pixel };
}

/** "rgb(31, 111, 74)" → [31, 111, 74]. */
function parseRgb(css) {
  const m = /^rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(css);
  assert.ok(m, `not an rgb() colour: ${css}`);
  return m.slice(1, 4).map(Number);
}

const near = (p, q, tolerance = 24) => p.every((v, i) => Math.abs(v - q[i]) <= tolerance);

/** How many pixels of a decoded image are (nearly) the given colour. */
function countColour(image, colour) {
  let n = 0;
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) if (near(image.pixel(x, y), colour)) n += 1;
  }
  return n;
}

/** Makes the page fetch everything now and waits until it has drawn it. */
const pageRefresh = (page) => page.evaluate(() => refresh());

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function openPage(base) {
  const page = await context.newPage();
  watch(page, base);
  await page.goto(base + "/");
  return page;
}

/**
 * What a node answers while its message bus is not wired in: 501, or the API
 * crate's 503 "message subsystem unavailable". Only these skip the message checks.
 */
const NOT_WIRED = /\b501\b|not implemented|message subsystem unavailable/;

/**
 * Against real nodes (run.sh with MYCELIUM_BIN sets WEBVIEW_STRICT), a check that
 * cannot run fails; against the stand-ins of a quick local run it is skipped, loudly.
 */
const STRICT = process.env.WEBVIEW_STRICT === "1";

function loudSkip(t, why) {
  if (STRICT) assert.fail(`cannot run against real nodes: ${why}`);
  const line = "!".repeat(78);
  console.error(`\n${line}\n!! SKIPPED: ${why}\n${line}\n`);
  t.skip(why);
}

// ---------------------------------------------------------------- set-up

before(async () => {
  if (!nodeA) {
    assert.ok(!nodeB, "WEBVIEW_NODE_B without WEBVIEW_NODE_A");
    mock = await startMockPair();
    nodeA = mock.a;
    nodeB = mock.b;
    aEndpoint = "tcp://127.0.0.1:9651";
    console.error(`no node given: testing against pretend nodes ${nodeA} and ${nodeB}`);
  }
  profile = await mkdtemp(join(tmpdir(), "webview-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  pages.a = await openPage(nodeA);
  if (nodeB) pages.b = await openPage(nodeB);
});

after(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  await mock?.close();
});

// ---------------------------------------------------------------- checks

test("the page shows the node's address, subnet and public key", async () => {
  for (const [name, base] of [["a", nodeA], ["b", nodeB]]) {
    if (!base) continue;
    const info = await getJson(base, "/api/v1/admin");
    const page = pages[name];
    await eventually(`identity of node ${name}`, async () => {
      assert.equal(await page.locator("#node-address").textContent(), info.nodeIp);
    }, 10000);
    assert.equal(await page.locator("#node-subnet").textContent(), info.nodeSubnet);
    assert.equal(await page.locator("#node-pubkey").textContent(), info.nodePubkey);
    assert.match(await page.locator("#node-uptime").textContent(), /^\d+ (s|min|h|d)/);
    assert.equal(await page.title(), `Mycelium node ${info.nodeIp}`);
  }
});

test("the peer table lists the node's peers, and each node shows the other alive", async () => {
  for (const [name, base] of [["a", nodeA], ["b", nodeB]]) {
    if (!base) continue;
    const page = pages[name];
    await eventually(`peer table of node ${name}`, async () => {
      const peers = await getJson(base, "/api/v1/admin/peers");
      await pageRefresh(page);
      const shown = await page.locator("#peers-table tbody tr[data-endpoint]").evaluateAll((rows) =>
        rows.map((r) => ({ endpoint: r.dataset.endpoint, state: r.cells[2].textContent, text: r.cells[0].textContent })),
      );
      const expected = peers.map((p) => ({ endpoint: endpointUri(p.endpoint), state: p.connectionState }));
      assert.deepEqual(
        shown.map(({ endpoint, state }) => ({ endpoint, state })).sort((x, y) => x.endpoint.localeCompare(y.endpoint)),
        expected.sort((x, y) => x.endpoint.localeCompare(y.endpoint)),
      );
      for (const row of shown) assert.equal(row.text, row.endpoint);
      const alive = peers.filter((p) => p.connectionState === "alive").length;
      assert.equal(await page.locator("#peer-count").textContent(), `(${peers.length}, ${alive} connected)`);
      if (nodeB) assert.ok(alive >= 1, `node ${name} has no live peer yet`);
    });
  }
  if (nodeB && aEndpoint) {
    // B dialled A: its page shows A's listening endpoint as a static, live peer.
    const row = pages.b.locator(`#peers-table tr[data-endpoint="${aEndpoint}"]`);
    assert.equal(await row.locator("td").nth(1).textContent(), "static");
    assert.equal(await row.locator("td").nth(2).textContent(), "alive");
    assert.match(await row.locator("td").nth(3).textContent(), /^\d+(\.\d+)? (B|KiB|MiB|GiB)$/);
  }
});

test("the selected route table follows the API", async () => {
  const page = pages.a;
  await eventually("selected routes of node a", async () => {
    const routes = await getJson(nodeA, "/api/v1/admin/routes/selected");
    await pageRefresh(page);
    const shown = await page.locator("#selected-routes tbody tr[data-subnet]").evaluateAll((rows) =>
      rows.map((r) => [...r.cells].map((c) => c.textContent)),
    );
    const expected = routes
      .map((r) => [r.subnet, r.nextHop, r.metric === "infinite" ? "∞ (retracted)" : String(r.metric), String(r.seqno)])
      .sort((x, y) => x[0].localeCompare(y[0]));
    assert.deepEqual(shown.sort((x, y) => x[0].localeCompare(y[0])), expected);
  }, 10000);
});

test("the route table shows the route to the other node", async (t) => {
  if (!nodeB) return loudSkip(t, "needs two nodes");
  for (const [from, to, base] of [["a", nodeB, nodeA], ["b", nodeA, nodeB]]) {
    const target = await getJson(to, "/api/v1/admin");
    const page = pages[from];
    await eventually(`route from ${from} to ${target.nodeSubnet}`, async () => {
      const routes = await getJson(base, "/api/v1/admin/routes/selected");
      const route = routes.find((r) => r.subnet === target.nodeSubnet);
      assert.ok(route, `node ${from}'s API has no selected route to ${target.nodeSubnet} yet`);
      await pageRefresh(page);
      const cells = await page.locator(`#selected-routes tr[data-subnet="${target.nodeSubnet}"] td`).allTextContents();
      assert.deepEqual(cells, [route.subnet, route.nextHop, String(route.metric), String(route.seqno)]);
      assert.equal(
        await page.locator("#selected-routes tbody tr[data-subnet]").count(),
        routes.length,
      );
    });
  }
});

test("the traffic history gives rates from counters, never a negative one, and stays bounded", async () => {
  const out = await pages.a.evaluate(() => {
    const h = new TrafficHistory({ windowMs: 300000, minStepMs: 1000, maxGapMs: 15000 });
    const seen = [];
    const rec = (t, tx, rx) => {
      h.record(t, new Map([["p", { tx, rx }]]));
      const v = h.view("p");
      for (const p of v.points) seen.push(p.tx, p.rx);
      return { current: v.current && { tx: v.current.tx, rx: v.current.rx }, points: v.points.length };
    };
    const steps = {
      first: rec(0, 1000, 1000),
      rate: rec(5000, 6000, 3000), // 5000 and 2000 bytes in 5 s
      tooSoon: rec(5500, 7000, 3500),
      reset: rec(10000, 200, 100), // the peer reconnected: counters start again
      afterReset: rec(15000, 1200, 100),
      pause: rec(60000, 2200, 200), // 45 s without a sample (a hidden tab)
      afterPause: rec(65000, 2200, 200 + 625),
    };
    // An hour at one sample a second, then one at the poll interval.
    let t = 65000;
    let tx = 2200;
    for (let i = 0; i < 3600; i += 1) { t += 1000; tx += 125; rec(t, tx, 825); }
    const summary = (v) => ({ points: v.points.length, age: v.now - v.points[0].t1, rate: v.current.tx });
    const dense = summary(h.view("p"));
    for (let i = 0; i < 720; i += 1) { t += 5000; tx += 125; rec(t, tx, 825); }
    const polled = summary(h.view("p"));
    // Peers come and go with the peer list.
    h.record(t + 5000, new Map([["q", { tx: 0, rx: 0 }]]));
    const afterChange = [...h.peers.keys()];
    return {
      steps, capacity: h.capacity, negative: seen.filter((r) => !(r >= 0)).length,
      dense, polled,
      afterChange,
      format: [formatBitRate(0), formatBitRate(999), formatBitRate(8000), formatBitRate(1234567)],
    };
  });
  const { steps } = out;
  assert.deepEqual(steps.first, { current: null, points: 0 });
  assert.deepEqual(steps.rate, { current: { tx: 8000, rx: 3200 }, points: 1 });
  assert.deepEqual(steps.tooSoon, steps.rate, "a sample 0.5 s after the last one is left out");
  assert.deepEqual(steps.reset, { current: null, points: 1 }, "a counter reset gives no rate");
  assert.deepEqual(steps.afterReset, { current: { tx: 1600, rx: 0 }, points: 2 });
  assert.deepEqual(steps.pause, { current: null, points: 2 }, "no rate spans a pause");
  assert.deepEqual(steps.afterPause, { current: { tx: 0, rx: 1000 }, points: 3 });
  assert.equal(out.negative, 0, "a rate was negative");
  assert.ok(out.dense.points <= out.capacity, `${out.dense.points} points kept, more than ${out.capacity}`);
  assert.ok(out.dense.age < 300000, `a point ended ${out.dense.age} ms ago, out of the window`);
  assert.equal(out.dense.rate, 1000);
  assert.equal(out.polled.points, 60, "five minutes at one sample every 5 s");
  assert.ok(out.polled.age < 300000);
  assert.deepEqual(out.afterChange, ["q"], "a peer gone from the list is forgotten");
  assert.deepEqual(out.format, ["0 bit/s", "999 bit/s", "8.00 kbit/s", "1.23 Mbit/s"]);
});

test("the route graph sums routes by next hop and stays readable with 0, 1, 2 and 50 next hops", async () => {
  const cases = await pages.a.evaluate(() => {
    const peer = (i) => ({ endpoint: { proto: "tcp", addr: { socket: `[2001:db8::${i.toString(16)}]:9651` } }, connectionState: "alive" });
    const hop = (i) => `TCP [2001:db8::ffff]:40000 <-> [2001:db8::${i.toString(16)}]:9651`;
    const results = [];
    for (const [n, count] of [[0, 0], [1, 1], [2, 3], [50, 5000]]) {
      const peers = Array.from({ length: n }, (_, i) => peer(i + 1));
      // Next hop 2 carries a few more than the rest (when there is one).
      const selected = Array.from({ length: count }, (_, i) => ({ subnet: `s${i}`, nextHop: hop(n > 1 && i % 7 === 0 ? 2 : (i % n) + 1) }));
      const fallback = n ? [{ subnet: "f", nextHop: hop(1) }] : [];
      if (n === 2) {
        // An IPv4 peer whose connection shows it as IPv4-mapped, and a live peer carrying nothing.
        peers.push({ endpoint: { proto: "tcp", addr: { socket: "[::ffff:192.0.2.7]:41234" } }, connectionState: "alive" });
        peers.push({ endpoint: { proto: "quic", addr: { socket: "192.0.2.8:9651" } }, connectionState: "alive" });
        selected.push({ subnet: "v4", nextHop: "TCP 192.0.2.1:9651 <-> 192.0.2.7:41234" });
      }
      const svg = document.createElementNS(SVG_NS, "svg");
      svg.setAttribute("class", "picture");
      svg.setAttribute("width", "900");
      document.body.append(svg);
      drawRouteGraph(svg, routeGraphModel(selected, fallback, peers));
      const view = svg.viewBox.baseVal;
      const boxes = [...svg.querySelectorAll("g.hop text, text.summary, circle.self")].map((e) => {
        const b = e.getBBox();
        return { x: b.x, y: b.y, right: b.x + b.width, bottom: b.y + b.height, text: e.textContent };
      });
      const overlaps = [];
      boxes.forEach((p, i) => boxes.slice(i + 1).forEach((q) => {
        if (p.x < q.right && q.x < p.right && p.y < q.bottom && q.y < p.bottom) overlaps.push(`${p.text} / ${q.text}`);
      }));
      const outside = boxes.filter((b) => b.x < 0 || b.y < 0 || b.right > view.width || b.bottom > view.height).map((b) => b.text);
      results.push({
        n, count: selected.length,
        elements: svg.querySelectorAll("*").length,
        hops: [...svg.querySelectorAll("g.hop")].map((g) => ({ ...g.dataset })),
        overlaps, outside, label: svg.getAttribute("aria-label"), text: svg.textContent,
      });
      svg.remove();
    }
    return results;
  });
  const [none, one, two, many] = cases;
  assert.deepEqual(none.hops, []);
  assert.match(none.text, /No next hops yet/);
  assert.deepEqual(one.hops, [{ subnets: "1", fallback: "1", nextHop: "TCP [2001:db8::ffff]:40000 <-> [2001:db8::1]:9651", peer: "tcp://[2001:db8::1]:9651" }]);
  assert.match(one.label, /^Routes by next hop: 1 selected subnet and 1 fallback route through 1 next hop\. tcp:\/\/\[2001:db8::1\]:9651: 1 subnet, 1 fallback\.$/);
  assert.deepEqual(two.hops.map((h) => [h.peer, h.subnets, h.fallback]), [
    ["tcp://[2001:db8::2]:9651", "2", "0"],
    ["tcp://[2001:db8::1]:9651", "1", "1"],
    ["tcp://[::ffff:192.0.2.7]:41234", "1", "0"],
    ["quic://192.0.2.8:9651", "0", "0"],
  ]);
  assert.equal(many.hops.length, 12, "50 next hops: 11 drawn and one for the rest");
  assert.equal(many.hops[0].peer, "tcp://[2001:db8::2]:9651", "the busiest next hop comes first");
  assert.equal(many.hops[11].others, "39");
  assert.equal(many.hops.reduce((n, h) => n + Number(h.subnets), 0), 5000);
  assert.match(many.label, /5000 selected subnets and 1 fallback route through 50 next hops/);
  for (const c of cases) {
    assert.deepEqual(c.overlaps, [], `${c.n} next hops: labels overlap`);
    assert.deepEqual(c.outside, [], `${c.n} next hops: labels outside the picture`);
    // Seven elements a next hop at most, whatever the number of routes.
    assert.ok(c.elements <= 12 * 7 + 3, `${c.n} next hops, ${c.count} routes: ${c.elements} elements`);
  }
});

/** A's live peer (B's link) as the page names it; A has no other live peer. */
async function linkOnA() {
  const alive = (await getJson(nodeA, "/api/v1/admin/peers")).filter((p) => p.connectionState === "alive");
  assert.equal(alive.length, 1, `node A has ${alive.length} live peers, expected B alone`);
  return endpointUri(alive[0].endpoint);
}

/** The rates the page shows under a peer's chart. */
const chartRates = (page, endpoint) =>
  page.locator(`#traffic-charts figure[data-endpoint="${endpoint}"] .rates`).evaluate((e) => ({
    text: e.textContent, ...e.dataset,
    label: e.closest("figure").querySelector("svg").getAttribute("aria-label"),
    role: e.closest("figure").querySelector("svg").getAttribute("role"),
  }));

const TRAFFIC_MESSAGES = 4;
const TRAFFIC_BYTES = 50_000;

/**
 * Screenshots an element and checks it shows `part` (a descendant) in its colour
 * (CSS `property` of it) on at least `least` pixels, and is not all background.
 */
async function assertDrawn(box, part, property, least) {
  await box.scrollIntoViewIfNeeded();
  const colour = parseRgb(await box.locator(part).first().evaluate((e, p) => getComputedStyle(e)[p], property));
  const background = parseRgb(await box.evaluate((e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (c && c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
    }
    return "rgb(255, 255, 255)";
  }));
  const image = decodePng(await box.screenshot());
  const drawn = countColour(image, colour);
  const blank = countColour(image, background);
  const area = image.width * image.height;
  assert.ok(drawn >= least, `only ${drawn} pixels of ${part}'s colour ${colour}`);
  assert.ok(blank < area * 0.98, `${blank} of ${area} pixels are background`);
  return { image, background };
}

test("the traffic charts of A and B show the bytes A sends B, on screen too", async (t) => {
  if (!nodeB || !aEndpoint) return loudSkip(t, "needs two nodes");
  const link = await eventually("B's link on A", linkOnA);
  for (const [page, endpoint] of [[pages.a, link], [pages.b, aEndpoint]]) {
    await eventually(`chart for ${endpoint}`, async () => {
      await pageRefresh(page);
      const rates = await chartRates(page, endpoint);
      assert.equal(rates.role, "img");
      assert.ok(rates.label.startsWith(`Traffic with ${endpoint} over the last 5 minutes: `), rates.label);
    }, 10000);
  }
  // A rate needs two samples at least a second apart: let both pages take a first one.
  await new Promise((r) => setTimeout(r, 1100));
  await Promise.all([pageRefresh(pages.a), pageRefresh(pages.b)]);

  const b = await getJson(nodeB, "/api/v1/admin");
  const topic = Buffer.from(`webview-traffic-${randomBytes(3).toString("hex")}`).toString("base64");
  for (let i = 0; i < TRAFFIC_MESSAGES; i += 1) {
    const payload = randomBytes(TRAFFIC_BYTES).toString("base64");
    const res = await postJson(nodeA, "/api/v1/messages", { dst: { ip: b.nodeIp }, topic, payload });
    if (NOT_WIRED.test(`${res.status} ${res.body}`)) return loudSkip(t, `sending messages: node A answers ${res.status}`);
    assert.equal(res.status, 201, `message ${i}: ${res.body}`);
  }
  // 200 kB within a few seconds is far above the link's keepalive traffic: expect at
  // least 40 kbit/s (all of it spread over 40 s) as the current rate once.
  const least = 40_000;
  let seenA = null;
  let seenB = null;
  await eventually("the burst in the charts' labels", async () => {
    await Promise.all([pageRefresh(pages.a), pageRefresh(pages.b)]);
    const onA = await chartRates(pages.a, link);
    const onB = await chartRates(pages.b, aEndpoint);
    if (Number(onA.txBps) >= least) seenA = onA;
    if (Number(onB.rxBps) >= least) seenB = onB;
    assert.ok(seenA, `A's chart for ${link} says "${onA.text}"`);
    assert.ok(seenB, `B's chart for ${aEndpoint} says "${onB.text}"`);
  }, 40000);
  for (const [seen, dir, word] of [[seenA, "tx", "sending"], [seenB, "rx", "receiving"]]) {
    const bps = Number(seen[`${dir}Bps`]);
    assert.ok(Number(seen[dir === "tx" ? "peakTxBps" : "peakRxBps"]) >= bps);
    assert.match(seen.text, /^▲ \d+(\.\d+)? (bit|kbit|Mbit|Gbit)\/s sent · ▼ \d+(\.\d+)? (bit|kbit|Mbit|Gbit)\/s received$/);
    assert.match(seen.label, new RegExp(`${word} \\d+(\\.\\d+)? (kbit|Mbit|Gbit)/s`));
  }
  // On screen: A's chart draws the burst in the colour of "sent", B's in "received".
  for (const [page, endpoint, series] of [[pages.a, link, "tx"], [pages.b, aEndpoint, "rx"]]) {
    const figure = page.locator(`#traffic-charts figure[data-endpoint="${endpoint}"]`);
    assert.match(await figure.locator(`path.${series}`).getAttribute("d"), /^M[\d.]+,[\d.]+/);
    await assertDrawn(figure, `path.${series}`, "stroke", 60);
  }
});

test("the route graph shows each next hop with as many subnets as the API, on screen too", async () => {
  const checks = [["a", nodeA]];
  if (nodeB) checks.push(["b", nodeB]);
  for (const [name, base] of checks) {
    const page = pages[name];
    await eventually(`route graph of node ${name}`, async () => {
      const [routes, fallback, peers] = await Promise.all([
        getJson(base, "/api/v1/admin/routes/selected"),
        getJson(base, "/api/v1/admin/routes/fallback"),
        getJson(base, "/api/v1/admin/peers"),
      ]);
      assert.ok(routes.length > 0, `node ${name} has no selected route yet`);
      await pageRefresh(page);
      const hops = await page.locator("#route-graph g.hop").evaluateAll((gs) =>
        gs.map((g) => ({ ...g.dataset, text: g.querySelector("text").textContent })));
      const nextHops = new Set([...routes, ...fallback].map((r) => r.nextHop));
      assert.ok(nextHops.size <= 12, "more next hops than the graph draws one by one");
      for (const nextHop of nextHops) {
        const hop = hops.find((h) => h.nextHop === nextHop);
        assert.ok(hop, `no next hop ${nextHop} in ${JSON.stringify(hops)}`);
        const subnets = routes.filter((r) => r.nextHop === nextHop).length;
        const fallbacks = fallback.filter((r) => r.nextHop === nextHop).length;
        // Named as the peer table names the peer at the other end of the link.
        const remote = nextHop.split(" ").pop().replace(/^\[::ffff:([\d.]+)\]/, "$1");
        const peer = peers.find((p) => p.endpoint.addr.socket?.replace(/^\[::ffff:([\d.]+)\]/, "$1") === remote);
        assert.equal(hop.peer, peer ? endpointUri(peer.endpoint) : remote, `the name of ${nextHop}`);
        assert.equal(hop.subnets, String(subnets));
        assert.equal(hop.fallback, String(fallbacks));
        assert.equal(hop.text, `${hop.peer}${subnets} subnet${subnets === 1 ? "" : "s"}${fallbacks ? ` · ${fallbacks} fallback` : ""}`);
      }
      assert.equal(hops.reduce((n, h) => n + Number(h.subnets), 0), routes.length);
      assert.match(await page.locator("#route-graph").getAttribute("aria-label"),
        new RegExp(`^Routes by next hop: ${routes.length} selected subnets? and `));
    });
  }
  if (nodeB && aEndpoint) {
    // Between the two real nodes: each one's route to the other goes through their link.
    const link = await linkOnA();
    for (const [name, base, to, peer] of [["a", nodeA, nodeB, link], ["b", nodeB, nodeA, aEndpoint]]) {
      const target = await getJson(to, "/api/v1/admin");
      const route = (await getJson(base, "/api/v1/admin/routes/selected")).find((r) => r.subnet === target.nodeSubnet);
      assert.ok(route, `node ${name} has no route to ${target.nodeSubnet}`);
      const named = await pages[name].locator("#route-graph g.hop").evaluateAll(
        (gs, nextHop) => gs.find((g) => g.dataset.nextHop === nextHop)?.dataset.peer, route.nextHop);
      assert.equal(named, peer, `node ${name}'s next hop towards ${target.nodeSubnet}`);
    }
  }

  // On screen: this node's disc, and the line to the busiest next hop drawn at its middle.
  await pageRefresh(pages.a);
  const graph = pages.a.locator("#route-graph");
  const { image, background } = await assertDrawn(graph, "circle.self", "fill", 2000);
  const ends = await graph.evaluate((svg) => {
    const at = svg.getBoundingClientRect();
    const centre = (e) => {
      const r = e.getBoundingClientRect();
      return [r.left + r.width / 2 - at.left, r.top + r.height / 2 - at.top];
    };
    return { hop: centre(svg.querySelector("g.hop circle")), self: centre(svg.querySelector("circle.self")) };
  });
  const mid = [0, 1].map((i) => Math.round((ends.hop[i] + ends.self[i]) / 2));
  assert.ok(!near(image.pixel(mid[0], mid[1]), background, 8), `the line to the first next hop is not drawn at ${mid}`);
});

test("the fallback, queried and packet tables follow the API", async () => {
  const page = pages.a;
  await eventually("tables of node a", async () => {
    const [fallback, queried, stats] = await Promise.all([
      getJson(nodeA, "/api/v1/admin/routes/fallback"),
      getJson(nodeA, "/api/v1/admin/routes/queried"),
      getJson(nodeA, "/api/v1/admin/stats/packets"),
    ]);
    await pageRefresh(page);
    assert.equal(await page.locator("#fallback-count").textContent(), `(${fallback.length})`);
    assert.equal(await page.locator("#queried-count").textContent(), `(${queried.length})`);
    const sources = await page.locator("#packets-by-source tbody td.mono").allTextContents();
    const top = [...stats.bySource].sort((x, y) => y.byteCount - x.byteCount).slice(0, 15);
    assert.deepEqual(new Set(sources), new Set(top.map((e) => e.ip)));
  }, 10000);
});

test("the page refreshes itself", async () => {
  const page = pages.a;
  const before = await page.locator("#refresh-status").textContent();
  await eventually("automatic refresh", async () => {
    const now = await page.locator("#refresh-status").textContent();
    assert.notEqual(now, before);
    assert.match(now, /^Updated /);
  }, 12000);
});

test("the peer form adds a peer and its remove button removes it", async () => {
  const page = pages.a;
  const uri = `tcp://127.0.0.1:${await freePort()}`;
  const apiHas = async () =>
    (await getJson(nodeA, "/api/v1/admin/peers")).some((p) => endpointUri(p.endpoint) === uri);

  await page.getByLabel("Add a peer", { exact: true }).fill(uri);
  await page.getByRole("button", { name: "Add peer" }).click();
  await eventually("peer added", async () => {
    assert.match(await page.locator("#peer-status").textContent(), /^Added /);
  }, 5000);
  assert.ok(await apiHas(), "the API does not list the added peer");
  const row = page.locator(`#peers-table tr[data-endpoint="${uri}"]`);
  await eventually("added peer shown", async () => assert.equal(await row.count(), 1), 5000);
  assert.equal(await row.locator("td").nth(1).textContent(), "static");

  // A second add of the same endpoint is refused, and the page says why.
  await page.getByLabel("Add a peer", { exact: true }).fill(uri);
  await page.getByRole("button", { name: "Add peer" }).click();
  await eventually("duplicate refused", async () => {
    assert.match(await page.locator("#peer-status").textContent(), /^Could not add .*409/);
  }, 5000);

  await page.getByRole("button", { name: `Remove peer ${uri}` }).click();
  await eventually("peer removed", async () => {
    assert.equal(await page.locator("#peer-status").textContent(), `Removed ${uri}.`);
    assert.equal(await row.count(), 0);
  }, 5000);
  assert.ok(!(await apiHas()), "the API still lists the removed peer");
});

test("receiving with nothing queued says so", async (t) => {
  const page = pages.a;
  await page.getByLabel("Wait (s)", { exact: true }).fill("0");
  await page.getByRole("button", { name: "Receive" }).click();
  const status = page.locator("#receive-status");
  await eventually("empty receive", async () => assert.doesNotMatch(await status.textContent(), /^Checking/), 5000);
  const text = await status.textContent();
  if (NOT_WIRED.test(text)) return loudSkip(t, `receiving messages: node A answers "${text}"`);
  assert.equal(text, "No message waiting.");
});

test("a message sent from A's page is received on B's page (A's own, with one node)", async (t) => {
  const receiver = nodeB ? "b" : "a";
  const a = await getJson(nodeA, "/api/v1/admin");
  const b = nodeB ? await getJson(nodeB, "/api/v1/admin") : a;
  const topic = `webview-${randomBytes(3).toString("hex")}`;
  const text = `Hello from A's web view ✓ ${randomBytes(4).toString("hex")}\nsecond line`;

  const pa = pages.a;
  await pa.getByLabel("Destination: overlay address or public key", { exact: true }).fill(b.nodeIp);
  await pa.getByLabel("Topic (optional)", { exact: true }).fill(topic);
  await pa.getByLabel("Message", { exact: true }).fill(text);
  await pa.getByRole("button", { name: "Send" }).click();
  const sendStatus = pa.locator("#send-status");
  await eventually("send answered", async () => assert.notEqual(await sendStatus.textContent(), ""), 10000);
  const sent = await sendStatus.textContent();
  if (NOT_WIRED.test(sent)) return loudSkip(t, `sending messages: node A answers "${sent}"`);
  assert.match(sent, /^Sent, message id [0-9a-f]{16}\.$/);

  const pb = pages[receiver];
  await pb.getByLabel("Only topic (optional)", { exact: true }).fill(topic);
  await pb.getByLabel("Wait (s)", { exact: true }).fill("5");
  const receiveStatus = pb.locator("#receive-status");
  const deadline = Date.now() + 25000;
  let status;
  for (;;) {
    await pb.getByRole("button", { name: "Receive" }).click();
    await eventually("receive answered", async () =>
      assert.doesNotMatch(await receiveStatus.textContent(), /^(Waiting|Checking)/), 10000);
    status = await receiveStatus.textContent();
    if (!/^No message/.test(status) || Date.now() > deadline) break;
  }
  if (NOT_WIRED.test(status)) return loudSkip(t, `receiving messages: node ${receiver} answers "${status}"`);
  assert.match(status, /^Received a message from /);
  assert.equal(await pb.locator("#received-text").textContent(), text);
  assert.equal(await pb.locator("#received-topic").textContent(), topic);
  assert.equal(await pb.locator("#received-src-ip").textContent(), a.nodeIp);
  assert.equal(await pb.locator("#received-src-pk").textContent(), a.nodePubkey);
  assert.match(await pb.locator("#received-id").textContent(), /^[0-9a-f]{16}$/);

  // Back on A: the delivery check asks the node about the message it sent.
  const id = /message id ([0-9a-f]{16})/.exec(sent)[1];
  const delivery = pa.locator("#delivery-status");
  await eventually("delivery state", async () => {
    await pa.getByRole("button", { name: "Check delivery" }).click();
    await eventually("delivery answered", async () => assert.notEqual(await delivery.textContent(), ""), 5000);
    const info = await getJson(nodeA, `/api/v1/messages/status/${id}`);
    assert.equal(info.dst, b.nodeIp);
    // Once B has handed it out, A knows it arrived (and B read it).
    if (nodeB) assert.match(JSON.stringify(info.state), /received|read/);
    assert.match(await delivery.textContent(), new RegExp(`^Message ${id} to ${b.nodeIp}: .+\\.$`));
  }, 15000);
  if (nodeB) await pb.screenshot({ path: SCREENSHOT.replace(/(\.png)?$/, "-b.png"), fullPage: true });
});

test("every form field has a label and every table has column headers", async () => {
  const page = pages.a;
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, textarea, select")]
      .filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label"))
      .map((e) => e.id || e.name),
  );
  assert.deepEqual(unlabelled, []);
  const headless = await page.evaluate(() =>
    [...document.querySelectorAll("table")].filter((t) => t.querySelectorAll("thead th[scope=col]").length === 0).map((t) => t.id),
  );
  assert.deepEqual(headless, []);
});

test("the page loads nothing but from its node, and A's page is captured", async () => {
  await pageRefresh(pages.a);
  await pages.a.screenshot({ path: SCREENSHOT, fullPage: true });
  const origins = new Set([new URL(nodeA).origin, nodeB && new URL(nodeB).origin]);
  const foreign = requested.filter((u) => !u.startsWith("data:") && !origins.has(new URL(u).origin));
  assert.deepEqual(foreign, []);
});

test("a node that asks for a bearer token gets one from the page", async () => {
  let token = process.env.WEBVIEW_TOKEN;
  let guarded = { a: process.env.WEBVIEW_TOKEN_NODE, close: async () => {} };
  if (!guarded.a || !token) {
    token = randomBytes(12).toString("hex");
    guarded = await startMockPair({ token });
  }
  const unauthorized = await fetch(`${guarded.a}/api/v1/admin`);
  assert.equal(unauthorized.status, 401, "the token node answers without a token");
  try {
    const page = await context.newPage();
    watch(page, guarded.a);
    const authorizations = [];
    page.on("request", (req) => {
      if (req.url().includes("/api/v1/")) authorizations.push(req.headers().authorization);
    });
    await page.goto(guarded.a + "/");
    const dialog = page.getByRole("dialog", { name: "API token needed" });
    await dialog.waitFor({ state: "visible", timeout: 10000 });
    assert.match(await page.locator("#identity-error").textContent(), /needs a token/);
    // Dismissed, the dialog stays shut on later refreshes until asked for again.
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden", timeout: 5000 });
    await pageRefresh(page);
    assert.ok(!(await dialog.isVisible()), "the dialog came back by itself");
    await page.getByRole("button", { name: "Enter API token" }).click();
    await dialog.waitFor({ state: "visible", timeout: 5000 });
    authorizations.length = 0;
    await page.getByLabel("API token", { exact: true }).fill(token);
    await page.getByRole("button", { name: "Use token" }).click();
    await eventually("identity after token", async () => {
      assert.equal(await page.locator("#node-address").textContent(), (await startInfo(guarded.a, token)).nodeIp);
    }, 10000);
    assert.ok(authorizations.length > 0);
    assert.ok(authorizations.every((h) => h === `Bearer ${token}`), `sent ${JSON.stringify(authorizations)}`);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("mycelium.apiToken")), token);
    assert.ok(await page.getByRole("button", { name: "Forget API token" }).isVisible());
    assert.ok(!(await page.getByRole("button", { name: "Enter API token" }).isVisible()));
    await page.close();
  } finally {
    await guarded.close();
  }
});

async function startInfo(base, token) {
  const res = await fetch(`${base}/api/v1/admin`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return res.json();
}

test("no page raised a script error or broke its security policy", () => {
  assert.deepEqual(pageErrors, []);
});
