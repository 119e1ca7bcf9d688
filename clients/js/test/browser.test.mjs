// End-to-end: the /inbox page in headless Chromium against real tidings servers.
// Chromium is Debian's (/usr/bin/chromium) driven by playwright-core. When it
// is missing the tests fail in CI (CI set) and skip elsewhere, naming it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { badge, messages, needChromium, openPage, signIn, stage, waitForBadge } from "./pages.mjs";
import { Server, mint, sleep } from "./server.mjs";

test("two users: a send from one page shows on the other within a second", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await signIn(alice, server, "alice");
  await signIn(bob, server, "bob");
  await waitForBadge(bob, 0);

  await alice.fill("#send-to", "bob");
  await alice.fill("#send-message", "Lunch at noon?");
  await alice.fill("#send-data", '{"room": "4B"}');
  // Timed inside the browser (one clock for both pages): submit on one, on screen on the other.
  await alice.evaluate(() => {
    document.getElementById("send-form").addEventListener("submit", () => {
      window.submittedAt = Date.now();
    });
  });
  const shown = bob.evaluate(
    () =>
      new Promise((resolve) => {
        new MutationObserver((_, observer) => {
          if (document.querySelector("#list li.item.unread")) {
            observer.disconnect();
            resolve(Date.now());
          }
        }).observe(document.getElementById("list"), { childList: true });
      }),
  );
  await alice.click("#send-button");
  const shownAt = await shown;
  const elapsed = shownAt - (await alice.evaluate(() => window.submittedAt));
  assert.ok(elapsed < 1000, `took ${elapsed} ms`);
  assert.equal(await bob.textContent("#list li.item .message"), "Lunch at noon?");
  await alice.waitForSelector("#send-result.ok");
  assert.match(await alice.textContent("#send-result"), /Sent to bob/);
  assert.equal(await badge(bob), 1);
  assert.equal(await bob.textContent("#list li.item .sender"), "alice");
  assert.equal(await bob.textContent("#list li.item .data"), '{"room":"4B"}');
  assert.deepEqual(await messages(alice), []); // the sender's own inbox is untouched
  assert.deepEqual([...alice.consoleLines, ...bob.consoleLines].filter((l) => /error/i.test(l)), []);
  t.diagnostic(`shown on the other page ${elapsed} ms after the submit`);
});

test("same user, two tabs: marking read in one changes the badge in both", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  for (const message of ["Build passed", "New comment", "Invoice ready"]) {
    await server.publish({ userId: "carol", message });
  }
  const tab1 = await openPage(browser);
  const tab2 = await openPage(browser);
  await signIn(tab1, server, "carol");
  await signIn(tab2, server, "carol");
  await waitForBadge(tab1, 3);
  await waitForBadge(tab2, 3);
  assert.deepEqual(await messages(tab1), ["Invoice ready", "New comment", "Build passed"]);

  await tab1.click("#list li.item.unread >> text=New comment");
  await waitForBadge(tab1, 2);
  await waitForBadge(tab2, 2);
  await tab2.waitForFunction(() => document.querySelectorAll("#list li.item.unread").length === 2, null, {
    timeout: 15000,
  });

  await tab2.click("#mark-all");
  await waitForBadge(tab2, 0);
  await waitForBadge(tab1, 0);
  assert.equal(await tab1.$$eval("#list li.item.unread", (els) => els.length), 0);
});

test("server down: five notifications stored meanwhile appear once, in order, when it is back", async (t) => {
  // The page's server stops. While it is down, five notifications are stored
  // by a second server process on the same SQLite data directory (one node at
  // a time), which then stops too. The first server comes back on its port;
  // the page reconnects with since=<last seq> and must show each of the five
  // exactly once, in order. The page cannot have seen them live: no server it
  // could reach was running while they were published.
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  const page = await openPage(browser);
  await signIn(page, server, "dave");
  await server.publish({ userId: "dave", message: "before the outage" });
  await page.waitForSelector("#list li.item >> text=before the outage");

  await server.stop();
  await page.waitForSelector('#status[data-state="reconnecting"]');
  const other = await new Server({ dataDir: server.dataDir }).start();
  for (let i = 1; i <= 5; i++) await other.publish({ userId: "dave", message: `while down ${i}` });
  await other.stop();
  await sleep(300);
  await server.start();

  await page.waitForFunction(() => document.querySelectorAll("#list li.item").length === 6, null, {
    timeout: 30000,
  });
  await page.waitForSelector('#status[data-state="connected"]');
  await sleep(300); // anything delivered twice would show up by now
  assert.deepEqual(await messages(page), [
    "while down 5",
    "while down 4",
    "while down 3",
    "while down 2",
    "while down 1",
    "before the outage",
  ]);
  const delivered = page.consoleLines
    .filter((line) => line.startsWith("tidings:notification"))
    .map((line) => line.split(" ").slice(3).join(" "));
  assert.deepEqual(delivered, [
    "before the outage",
    "while down 1",
    "while down 2",
    "while down 3",
    "while down 4",
    "while down 5",
  ]);
  assert.equal(await badge(page), 6);
});

test("the indicator follows the connection: live, offline, live again", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  const page = await openPage(browser);
  await signIn(page, server, "erin");
  assert.equal(await page.textContent("#status-text"), "live");
  await browser.context.setOffline(true);
  await page.waitForSelector('#status[data-state="offline"]');
  assert.equal(await page.textContent("#status-text"), "offline");
  await server.publish({ userId: "erin", message: "sent while the tab was offline" });
  await browser.context.setOffline(false);
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForSelector("#list li.item >> text=sent while the tab was offline");
});

test("without --dev-login the page asks for a token; a refused one is asked again", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server().start();
  const browser = await stage(t, server);
  const page = await openPage(browser);
  await page.goto(`${server.url}/inbox`);
  await page.waitForSelector("#token-form:not([hidden])");
  assert.equal(await page.isHidden("#dev-login-form"), true);
  await page.fill("#token-input", "not a token");
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#sign-in-error:not([hidden])");
  // A well-formed token the server refuses: the client goes offline, the page asks again.
  await page.fill("#token-input", mint("frank", { secret: "some-other-secret-".padEnd(40, "z") }));
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#sign-in-error >> text=/refused this token/", { timeout: 10000 });
  await page.fill("#token-input", server.token("frank"));
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.reload(); // the token is kept for this tab
  await page.waitForSelector('#status[data-state="connected"]');
  assert.equal(await page.textContent("#who-name"), "frank");
});

test("the seed's snippet, only its URL changed, logs the notifications it receives", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--allow-user-id"] }).start();
  const browser = await stage(t, server);
  const page = await browser.context.newPage();
  const logged = [];
  page.on("console", async (message) => {
    logged.push(await Promise.all(message.args().map((arg) => arg.jsonValue())));
  });
  await page.goto(`${server.url}/healthz`);
  // Verbatim from the seed's "Testing On Frontend App", with only the URL changed.
  const snippet = `const webSocket = new WebSocket("ws://127.0.0.1:${server.port}/ws?userId=bob");
webSocket.onopen = () => {
console.log("Connected to WebSocket");
};
webSocket.onmessage = (event) => {
const data = JSON.parse(event.data);
console.log("Received Notification:", data);
};
webSocket.onclose = () => {
console.log("Disconnected from WebSocket");
};`;
  await page.addScriptTag({ content: snippet });
  const waitLogged = async (first) => {
    for (let i = 0; i < 500 && !logged.some((args) => args[0] === first); i++) await sleep(10);
    return logged.filter((args) => args[0] === first);
  };
  assert.equal((await waitLogged("Connected to WebSocket")).length, 1);
  const sent = await server.publish({ userId: "bob", message: "Hello from the new server" });
  const [[, data]] = await waitLogged("Received Notification:");
  assert.equal(data.message, "Hello from the new server");
  assert.equal(data.notificationId, sent.notificationId);
  await server.stop();
  assert.equal((await waitLogged("Disconnected from WebSocket")).length, 1);
});
