// Browser test for the built-in chat page: two real Chromium pages talk
// through a running rookery server (chat mode) in room "kitchen" (the URL
// fragment), and a third page in the default room hears none of it.
//
//   ROOKERY_URL=http://127.0.0.1:PORT/ node --test chat.test.mjs
//   ROOKERY_URL=https://127.0.0.1:PORT/ ...   (a server with --tls-cert: wss)
//
// Optional: ROOKERY_SCREENSHOT=/path/shot.png saves a picture of page 1
// (taken at the end, pass or fail). CHROMIUM overrides /usr/bin/chromium.
// The server runs with --history, so that a page that loses its
// connection resumes where it was (rookery.v1, ?since=).
// ROOKERY_DEFLATE=1 (a server with --deflate) checks that Chromium
// negotiated permessage-deflate on every socket and that a long, compressed
// line goes through.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const BASE_URL = process.env.ROOKERY_URL;
const SCREENSHOT = process.env.ROOKERY_SCREENSHOT;
const WELCOME = "Welcome to Rookery Chat!";
const STEP_MS = 15_000;   // per wait; the whole file is capped at 60 s below

// Hard stop: a hung browser or server must not hang CI.
setTimeout(() => {
  console.error("chat.test.mjs: overall 60 s timeout reached");
  process.exit(1);
}, 60_000).unref();

let browser, page1, page2, page3;
const pageErrors = [];
const socketUrls = [];
const DEFLATE = process.env.ROOKERY_DEFLATE === "1";
// The Sec-WebSocket-Extensions of each handshake answer, from DevTools.
const socketExtensions = [];

// "disconnected" contains "connected", so match the word on its own.
const isConnected = () => {
  const t = document.getElementById("status")?.textContent ?? "";
  return /\bconnected\b/i.test(t) && !/disconnected/i.test(t);
};

// Resolves once a .message element in #messages has exactly this text.
function waitForMessage(page, text) {
  return page.waitForFunction(
    (want) => [...document.querySelectorAll("#messages .message")]
      .some((el) => el.textContent === want),
    text, { timeout: STEP_MS });
}

const messageTexts = (page) =>
  page.$$eval("#messages .message", (els) => els.map((el) => el.textContent));

async function openChat(viewport, fragment = "") {
  return (await openChatIn(viewport, fragment)).page;
}

async function openChatIn(viewport, fragment = "") {
  // Over https the server has a test certificate no browser trusts.
  const ignoreHTTPSErrors = new URL(BASE_URL).protocol === "https:";
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors });
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("websocket", (ws) => socketUrls.push(ws.url()));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const headers = Object.fromEntries(Object.entries(e.response.headers)
      .map(([k, v]) => [k.toLowerCase(), v]));
    socketExtensions.push(headers["sec-websocket-extensions"] ?? "");
  });
  await page.goto(BASE_URL + fragment, { timeout: STEP_MS });
  return { page, context };
}

async function say(page, text) {
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
}

before(async () => {
  assert.ok(BASE_URL, "set ROOKERY_URL to the server's base URL, e.g. http://127.0.0.1:1984/");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: STEP_MS,
  });
  // One desktop-sized and one phone-sized page, so both layouts get exercised.
  page1 = await openChat({ width: 1024, height: 700 }, "#kitchen");
  page2 = await openChat({ width: 390, height: 844 }, "#kitchen");
  page3 = await openChat({ width: 800, height: 600 });
});

after(async () => {
  if (SCREENSHOT && page1) {
    try { await page1.screenshot({ path: SCREENSHOT }); }
    catch (err) { console.error("screenshot failed:", err.message); }
  }
  await browser?.close();
});

test("both pages connect and receive the welcome message", { timeout: 30_000 }, async () => {
  for (const page of [page1, page2, page3]) {
    await page.waitForFunction(isConnected, null, { timeout: STEP_MS });
    await waitForMessage(page, WELCOME);
    assert.equal(await page.isEnabled("#input"), true, "input enabled once connected");
  }
  // The socket must go to the page's own host, never a hard-coded one.
  const host = new URL(BASE_URL).host;
  assert.ok(socketUrls.length >= 3, "each page opened a WebSocket");
  for (const url of socketUrls) assert.equal(new URL(url).host, host, url);
  // wss from a page served over https, ws from one over http.
  const scheme = new URL(BASE_URL).protocol === "https:" ? "wss:" : "ws:";
  for (const url of socketUrls) assert.equal(new URL(url).protocol, scheme, url);
  // The fragment names the room: its socket goes to PATH/kitchen.
  const paths = socketUrls.map((u) => new URL(u).pathname).sort();
  assert.deepEqual(paths, ["/chat", "/chat/kitchen", "/chat/kitchen"]);
});

test("permessage-deflate is negotiated exactly when the server takes it", { timeout: 20_000 }, async () => {
  assert.ok(socketExtensions.length >= 3, `handshakes seen: ${socketExtensions.length}`);
  for (const ext of socketExtensions) {
    if (DEFLATE) {
      assert.match(ext, /^permessage-deflate; server_no_context_takeover; client_no_context_takeover$/);
    } else {
      assert.equal(ext, "", "no extension without --deflate");
    }
  }
  // A line long enough to be compressed both ways (the server compresses
  // from 96 bytes), and repetitive enough to shrink.
  const text = `long line ${Date.now()} ` + "the kitchen is warm and the kettle is on; ".repeat(20).trim();
  await page1.locator("#input").fill(text);
  await page1.locator("#input").press("Enter");
  await waitForMessage(page2, text);
});

test("each page shows its room's name", { timeout: 20_000 }, async () => {
  for (const page of [page1, page2]) {
    assert.equal(await page.textContent("#room"), "#kitchen");
  }
  assert.equal(await page3.textContent("#room"), "(default room)");
});

test("a message typed in page 1 reaches page 2 and page 1", { timeout: 20_000 }, async () => {
  const text = `hello from page 1 ${Date.now()}-${Math.random().toString(36).slice(2)}`;
  await page1.locator("#input").pressSequentially(text);
  await page1.locator("#input").press("Enter");
  await waitForMessage(page2, text);
  await waitForMessage(page1, text);   // the sender gets the broadcast too
  assert.equal(await page1.inputValue("#input"), "", "input cleared after sending");
  // Page 1 knows it as its own; page 2 as someone else's.
  const ownOf = (page) => page.$$eval("#messages .message",
    (els, want) => els.filter((el) => el.textContent === want)
      .map((el) => el.classList.contains("own")), text);
  assert.deepEqual(await ownOf(page1), [true]);
  assert.deepEqual(await ownOf(page2), [false]);
});

test("a page in another room hears nothing of the kitchen", { timeout: 20_000 }, async () => {
  const text = `only for the default room ${Date.now()}`;
  await page3.locator("#input").fill(text);
  await page3.locator("#input").press("Enter");
  await waitForMessage(page3, text);
  const kitchenMarker = `kitchen marker ${Date.now()}`;
  await page1.locator("#input").fill(kitchenMarker);
  await page1.locator("#input").press("Enter");
  await waitForMessage(page2, kitchenMarker);
  for (const page of [page1, page2]) {
    assert.ok(!(await messageTexts(page)).includes(text), "default room's message stayed there");
  }
  // page 3 saw only the welcome and its own message.
  assert.deepEqual(await messageTexts(page3), [WELCOME, text]);
});

test("empty and blank messages are not sent", { timeout: 20_000 }, async () => {
  const before = (await messageTexts(page2)).length;
  await page1.locator("#input").fill("   ");
  await page1.locator("#input").press("Enter");
  await page1.locator("#send").click();
  // A marker sent afterwards must be the very next message page 2 sees.
  const marker = `marker ${Date.now()}`;
  await page1.locator("#input").fill(marker);
  await page1.locator("#send").click();
  await waitForMessage(page2, marker);
  assert.deepEqual((await messageTexts(page2)).slice(before), [marker]);
});

test("HTML in a message is shown as text", { timeout: 20_000 }, async () => {
  const text = `<b>x</b> ${Date.now()}`;
  await page1.locator("#input").pressSequentially(text);
  await page1.locator("#input").press("Enter");
  for (const page of [page2, page1]) {
    await waitForMessage(page, text);
    assert.equal(await page.locator("#messages b").count(), 0, "no <b> element created");
  }
  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
});

test("a page that drops off the network and comes back shows every message once, in order", { timeout: 40_000 }, async () => {
  const tag = Date.now().toString(36);
  const { page: away, context } = await openChatIn({ width: 800, height: 600 }, "#resume");
  const talker = await openChat({ width: 800, height: 600 }, "#resume");
  for (const page of [away, talker]) await page.waitForFunction(isConnected, null, { timeout: STEP_MS });
  const texts = Array.from({ length: 8 }, (_, i) => `resume ${tag} ${i}`);
  await say(talker, texts[0]);
  await waitForMessage(away, texts[0]);
  // Offline: Chromium fails the page's socket; the room goes on without it.
  await context.setOffline(true);
  await away.waitForFunction(() => /disconnected/.test(document.getElementById("status").textContent),
    null, { timeout: STEP_MS });
  for (const text of texts.slice(1, 6)) {
    await say(talker, text);
    await waitForMessage(talker, text);
  }
  await context.setOffline(false);
  await waitForMessage(away, texts[5]);
  await away.waitForFunction(isConnected, null, { timeout: STEP_MS });
  for (const text of texts.slice(6)) await say(talker, text);
  await waitForMessage(away, texts[7]);
  const shown = (await messageTexts(away)).filter((t) => t.startsWith(`resume ${tag}`));
  assert.deepEqual(shown, texts, "each message once, in order");
  assert.deepEqual(await messageTexts(away).then((all) => all.filter((t) => t === WELCOME)), [WELCOME],
    "the welcome once");
  assert.equal(await away.locator("#messages .notice").count(), 0, "no gap to report");
  assert.match(await away.textContent("#status"), /5 missed recovered/);
  // The page came back with its position.
  const resumed = socketUrls.filter((u) => new URL(u).searchParams.has("since"));
  assert.ok(resumed.some((u) => new URL(u).pathname === "/chat/resume"), socketUrls.join(" "));
  await context.close();
});

test("a page away for longer than the history holds says that it missed messages", { timeout: 40_000 }, async () => {
  const tag = Date.now().toString(36);
  const { page: away, context } = await openChatIn({ width: 800, height: 600 }, "#gap");
  const talker = await openChat({ width: 800, height: 600 }, "#gap");
  for (const page of [away, talker]) await page.waitForFunction(isConnected, null, { timeout: STEP_MS });
  await say(talker, `gap ${tag} first`);
  await waitForMessage(away, `gap ${tag} first`);
  await context.setOffline(true);
  await away.waitForFunction(() => /disconnected/.test(document.getElementById("status").textContent),
    null, { timeout: STEP_MS });
  // The server runs with --history 50: 60 messages push the first missed
  // one out.
  const missed = Array.from({ length: 60 }, (_, i) => `gap ${tag} ${i}`);
  for (const text of missed) await say(talker, text);
  await waitForMessage(talker, missed[59]);
  await context.setOffline(false);
  await waitForMessage(away, missed[59]);
  assert.equal(await away.locator("#messages .notice").count(), 1, "the gap is reported once");
  const shown = (await messageTexts(away)).filter((t) => t.startsWith(`gap ${tag}`));
  assert.deepEqual(shown, [`gap ${tag} first`, ...missed.slice(10)], "the history after the gap, once each");
  await context.close();
});
