// The /admin operator page in headless Chromium against a real server: the
// admin token asked for on the page (never in the URL), refusals, and figures
// that follow real connections and publishes live.

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { needChromium, openPage, stage } from "./pages.mjs";
import { Server, mint } from "./server.mjs";

const text = (page, selector, want, timeout = 10000) =>
  page.waitForFunction(([s, w]) => document.querySelector(s)?.textContent === w, [selector, want], { timeout });

function connect(server, user) {
  const ws = new WebSocket(`${server.wsUrl}?token=${mint(user)}`);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

test("the operator page asks for an admin token, refuses a bad one, and follows connections live", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server().start();
  const browser = await stage(t, server);
  const page = await openPage(browser);
  await page.goto(`${server.url}/admin`);
  await page.waitForSelector("#token-form:not([hidden])");
  assert.equal(await page.isHidden("#app"), true);

  await page.fill("#token-input", "not a token");
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#sign-in-error >> text=/refused this token/");
  await page.fill("#token-input", mint("mallory")); // a valid user token, not an admin's
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#sign-in-error >> text=/needs an admin token/");
  assert.equal(await page.isHidden("#app"), true);

  const token = mint("ops", { admin: true });
  await page.fill("#token-input", token);
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForSelector('#status[data-state="connected"]');
  assert.equal(await page.textContent("#nodes-count"), "1");
  assert.equal(await page.$$eval("#nodes tr", (rows) => rows.length), 1);
  await text(page, "#connections-total", "0");
  await text(page, "#health-status", "ready");
  assert.ok(!page.url().includes(token) && !page.url().includes("token"), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tidings.adminToken")), token);
  // The two refused tokens are the node's recent errors.
  await page.waitForSelector("#errors li >> text=unauthorized");
  await page.waitForSelector("#errors li >> text=forbidden");

  // New connections raise the figures while the page watches.
  const first = await connect(server, "alice");
  await text(page, "#connections-total", "1");
  await text(page, "#users-online", "1");
  const more = [await connect(server, "alice"), await connect(server, "bob")];
  await text(page, "#connections-total", "3");
  await text(page, "#users-online", "2");
  await text(page, "#nodes tr td.conns", "3");
  await text(page, "#total-handshakes", "3 since start");
  for (let i = 0; i < 4; i++) await server.publish({ userId: "bob", message: `m${i}` });
  await text(page, "#total-publishes", "4 since start");
  await text(page, "#total-deliveries", "4 since start");
  await page.waitForFunction(() => document.getElementById("rate-publishes").textContent !== "–");

  for (const ws of [first, ...more]) ws.close();
  await text(page, "#connections-total", "0");
  await page.reload(); // the token is kept for this tab only
  await page.waitForSelector('#status[data-state="connected"]');
  assert.equal(await page.isHidden("#sign-in"), true);
  await page.click("#sign-out");
  await page.waitForSelector("#token-form:not([hidden])");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tidings.adminToken")), null);
  assert.deepEqual(page.consoleLines.filter((l) => /pageerror/.test(l)), []);
});
