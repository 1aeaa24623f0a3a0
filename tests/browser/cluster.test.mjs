// Browser test of the built-in page across two nodes joined through Redis
// (SPEC §12 with --redis): a page on node 1, a talker page on node 2, both
// in room "cluster". Node 1 is killed while the talker goes on, then
// started again on the same port: the page reconnects with ?since= to the
// restarted node, which reads the room's log from Redis, and the page
// shows every message once, in order, with no gap.
//
//   ROOKERY_BIN=path/to/rookery ROOKERY_REDIS_URL=redis://127.0.0.1:PORT \
//     node --test cluster.test.mjs
//
// .ci/browser-test --cluster BIN starts the redis-server. CHROMIUM
// overrides /usr/bin/chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

const BIN = process.env.ROOKERY_BIN;
const REDIS_URL = process.env.ROOKERY_REDIS_URL;
const STEP_MS = 15_000;

setTimeout(() => {
  console.error("cluster.test.mjs: overall 60 s timeout reached");
  process.exit(1);
}, 60_000).unref();

let browser;
const nodes = [];
const pageErrors = [];
const socketUrls = [];

const isConnected = () => {
  const t = document.getElementById("status")?.textContent ?? "";
  return /\bconnected\b/i.test(t) && !/disconnected/i.test(t);
};

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts a node on `port` and waits until it is connected to Redis.
async function startNode(port) {
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--history", "50", "--metrics",
    "--redis", REDIS_URL], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr.on("data", () => {});
  nodes.push(child);
  const deadline = Date.now() + STEP_MS;
  while (Date.now() < deadline) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (/^rookery_redis_connected 1$/m.test(text)) return child;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`node on ${port} did not connect to Redis`);
}

async function stopNode(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

async function openChat(port, fragment) {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("websocket", (ws) => socketUrls.push(ws.url()));
  await page.goto(`http://127.0.0.1:${port}/${fragment}`, { timeout: STEP_MS });
  await page.waitForFunction(isConnected, null, { timeout: STEP_MS });
  return page;
}

function waitForMessage(page, text) {
  return page.waitForFunction(
    (want) => [...document.querySelectorAll("#messages .message")]
      .some((el) => el.textContent === want),
    text, { timeout: STEP_MS });
}

async function say(page, text) {
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
}

before(async () => {
  assert.ok(BIN && REDIS_URL, "set ROOKERY_BIN and ROOKERY_REDIS_URL");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: STEP_MS,
  });
});

after(async () => {
  await browser?.close();
  for (const child of nodes) await stopNode(child);
});

test("a page whose node restarts while another node's member talks shows every message once, in order",
  { timeout: 50_000 }, async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    let node1 = await startNode(p1);
    await startNode(p2);
    const tag = Date.now().toString(36);
    const texts = Array.from({ length: 12 }, (_, i) => `cluster ${tag} ${i}`);
    const away = await openChat(p1, "#cluster");
    const talker = await openChat(p2, "#cluster");
    for (const text of texts.slice(0, 4)) await say(talker, text);
    await waitForMessage(away, texts[3]);
    // Node 1 goes; the talker on node 2 goes on.
    await stopNode(node1);
    await away.waitForFunction(() => /disconnected|connecting/.test(document.getElementById("status").textContent),
      null, { timeout: STEP_MS });
    for (const text of texts.slice(4, 8)) {
      await say(talker, text);
      await waitForMessage(talker, text);
    }
    // Node 1 again, on the same port, knowing nothing of the room.
    node1 = await startNode(p1);
    await waitForMessage(away, texts[7]);
    await away.waitForFunction(isConnected, null, { timeout: STEP_MS });
    for (const text of texts.slice(8)) await say(talker, text);
    await waitForMessage(away, texts[11]);
    const shown = (await away.$$eval("#messages .message", (els) => els.map((el) => el.textContent)))
      .filter((t) => t.startsWith(`cluster ${tag}`));
    assert.deepEqual(shown, texts, "each message once, in order");
    assert.equal(await away.locator("#messages .notice").count(), 0, "no gap to report");
    const resumed = socketUrls.filter((u) => new URL(u).searchParams.has("since"));
    assert.ok(resumed.some((u) => new URL(u).port === String(p1)), socketUrls.join(" "));
    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
  });
