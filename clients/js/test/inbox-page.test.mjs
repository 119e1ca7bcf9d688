// The /inbox page's inbox features in headless Chromium against real servers:
// older pages, per-item actions synced between tabs, tags, the unread-only
// filter, desktop notifications and the exact unread count in the title.

import assert from "node:assert/strict";
import { test } from "node:test";
import { badge, itemOf, messages, needChromium, openPage, signIn, stage, waitForBadge, waitForTitle } from "./pages.mjs";
import { Server, mint, sleep } from "./server.mjs";

/** An inbox API call as `user`, from outside the browser (another device). */
async function api(server, user, method, path, body = undefined) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${mint(user)}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const countItems = (page, n, timeout = 15000) =>
  page.waitForFunction((want) => document.querySelectorAll("#list li.item").length === want, n, { timeout });

test("63 stored: load more shows all 63 once, in order, and the title keeps the server's count", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  for (let i = 1; i <= 63; i++) {
    await server.publish({ userId: "gina", message: `note ${i}`, tags: i % 7 === 0 ? ["billing", `n${i}`] : [] });
  }
  const page = await openPage(browser);
  await signIn(page, server, "gina");
  await countItems(page, 50);
  await waitForTitle(page, "(63) Inbox · tidings");
  assert.equal(await page.isVisible("#load-more"), true);

  await page.click("#load-more");
  await countItems(page, 63);
  const expected = Array.from({ length: 63 }, (_, i) => `note ${63 - i}`);
  assert.deepEqual(await messages(page), expected);
  const ids = await page.$$eval("#list li.item", (els) => els.map((e) => e.dataset.id));
  assert.equal(new Set(ids).size, 63);
  assert.equal(await page.isHidden("#load-more"), true); // nothing older is left
  assert.equal(await badge(page), 63);
  // Tags are shown on each item that has them, on the older page too.
  assert.deepEqual(await itemOf(page, "note 7").locator(".tag").allTextContents(), ["billing", "n7"]);
  assert.deepEqual(await itemOf(page, "note 63").locator(".tag").allTextContents(), ["billing", "n63"]);
  assert.equal(await itemOf(page, "note 8").locator(".tag").count(), 0);

  // Marked read on another device, among the items of the older page.
  const { items } = await api(server, "gina", "GET", "/v1/users/me/inbox?order=oldest&limit=3");
  await api(server, "gina", "POST", "/v1/users/me/notifications/read", { ids: items.map((i) => i.notificationId) });
  await waitForTitle(page, "(60) Inbox · tidings");
  assert.equal(await itemOf(page, "note 2").evaluate((li) => li.classList.contains("unread")), false);

  // Marked while this tab is offline: the push is lost, the reconnect brings the count back exact.
  await browser.context.setOffline(true);
  await page.waitForSelector('#status[data-state="offline"]');
  const more = await api(server, "gina", "GET", "/v1/users/me/inbox?order=oldest&limit=5&read=false");
  await api(server, "gina", "POST", "/v1/users/me/notifications/read", {
    ids: more.items.slice(0, 2).map((i) => i.notificationId),
  });
  await browser.context.setOffline(false);
  await page.waitForSelector('#status[data-state="connected"]');
  await waitForTitle(page, "(58) Inbox · tidings");
  const counts = await api(server, "gina", "GET", "/v1/users/me/counts");
  assert.equal(counts.unread, 58);
  assert.equal(await page.$$eval("#list li.item", (els) => els.length), 63);
});

test("mark unread, archive and delete change the list and the count, and sync to a second tab", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  for (const message of ["alpha", "beta", "gamma"]) await server.publish({ userId: "hank", message });
  const tab1 = await openPage(browser);
  const tab2 = await openPage(browser);
  await signIn(tab1, server, "hank");
  await signIn(tab2, server, "hank");
  await waitForBadge(tab1, 3);
  await waitForBadge(tab2, 3);
  const isUnread = (page, message) => itemOf(page, message).evaluate((li) => li.classList.contains("unread"));

  await itemOf(tab1, "beta").locator(".act-read").click();
  await waitForBadge(tab1, 2);
  await waitForBadge(tab2, 2);
  await tab2.waitForSelector("#list li.item:not(.unread) >> text=beta");

  await itemOf(tab1, "beta").locator(".act-unread").click();
  await waitForBadge(tab1, 3);
  await waitForBadge(tab2, 3);
  assert.equal(await isUnread(tab2, "beta"), true);

  await itemOf(tab1, "alpha").locator(".act-archive").click();
  await waitForBadge(tab2, 2);
  await waitForBadge(tab1, 2);
  await tab2.waitForFunction(() => !document.querySelector("#list").textContent.includes("alpha"));

  await itemOf(tab2, "gamma").locator(".act-delete").click();
  await waitForBadge(tab1, 1);
  await waitForBadge(tab2, 1);
  await tab1.waitForFunction(() => !document.querySelector("#list").textContent.includes("gamma"));
  assert.deepEqual(await messages(tab1), ["beta"]);
  assert.deepEqual(await messages(tab2), ["beta"]);
  await waitForTitle(tab1, "(1) Inbox · tidings");
  await waitForTitle(tab2, "(1) Inbox · tidings");

  // The server agrees: beta in the inbox, alpha archived, gamma gone.
  const inbox = await api(server, "hank", "GET", "/v1/users/me/inbox");
  assert.deepEqual(inbox.items.map((i) => i.message), ["beta"]);
  assert.deepEqual(inbox.counts, { total: 1, unread: 1, unseen: 1 });
  const archived = await api(server, "hank", "GET", "/v1/users/me/inbox?archived=only");
  assert.deepEqual(archived.items.map((i) => i.message), ["alpha"]);
  const everything = await api(server, "hank", "GET", "/v1/users/me/inbox?archived=include");
  assert.deepEqual(everything.items.map((i) => i.message).sort(), ["alpha", "beta"]);
  assert.deepEqual([...tab1.consoleLines, ...tab2.consoleLines].filter((l) => /error/i.test(l)), []);
});

test("the unread-only filter is a visible, labelled control", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  for (const message of ["one", "two", "three"]) await server.publish({ userId: "iris", message });
  const page = await openPage(browser);
  await signIn(page, server, "iris");
  await countItems(page, 3);
  await itemOf(page, "two").locator(".act-read").click();
  await waitForBadge(page, 2);

  const filter = page.getByRole("checkbox", { name: "Unread only" });
  assert.equal(await filter.isVisible(), true);
  await filter.check();
  await countItems(page, 2);
  assert.deepEqual(await messages(page), ["three", "one"]);
  assert.equal(await page.getAttribute("#bell", "aria-pressed"), "true");
  await itemOf(page, "one").locator(".act-read").click();
  await countItems(page, 1);
  await filter.uncheck();
  await countItems(page, 3);
  // The bell is the same filter.
  await page.click("#bell");
  assert.equal(await filter.isChecked(), true);
  await countItems(page, 1);
  await itemOf(page, "three").locator(".act-read").click();
  await page.waitForSelector("#empty:not([hidden]) >> text=No unread notifications");
});

test("desktop notifications: the toggle asks permission; a notification while hidden shows one", async (t) => {
  if (!needChromium(t)) return;
  const server = await new Server({ args: ["--dev-login"] }).start();
  const browser = await stage(t, server);
  await browser.context.grantPermissions(["notifications"], { origin: server.url });
  const page = await openPage(browser);
  await page.addInitScript(() => {
    // Record what the page asks of the Notification API, and let the test hide the tab.
    const Real = window.Notification;
    window.shown = [];
    window.asked = 0;
    class Recording extends Real {
      constructor(title, options = {}) {
        super(title, options);
        window.shown.push({ title, body: options.body, tag: options.tag });
      }
    }
    Object.defineProperty(Recording, "permission", { get: () => Real.permission });
    Recording.requestPermission = (...args) => {
      window.asked += 1;
      return Real.requestPermission(...args);
    };
    window.Notification = Recording;
    let hidden = false;
    Object.defineProperty(document, "visibilityState", { get: () => (hidden ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { get: () => hidden });
    window.setHidden = (value) => {
      hidden = value;
      document.dispatchEvent(new Event("visibilitychange"));
    };
  });
  await signIn(page, server, "jack");
  const toggle = page.getByRole("checkbox", { name: "Desktop notifications" });
  assert.equal(await toggle.isChecked(), false);
  await toggle.check();
  await page.waitForFunction(() => window.asked === 1);
  assert.equal(await toggle.isChecked(), true);

  await server.publish({ userId: "jack", message: "while looking" });
  await page.waitForSelector("#list li.item >> text=while looking");
  await sleep(200);
  assert.deepEqual(await page.evaluate(() => window.shown), []); // the tab is in view: no pop-up

  await page.evaluate(() => window.setHidden(true));
  const sent = await server.publish({ userId: "jack", message: "while away" });
  await page.waitForFunction(() => window.shown.length === 1);
  assert.deepEqual(await page.evaluate(() => window.shown), [
    { title: "From backend", body: "while away", tag: sent.notificationId },
  ]);
  await waitForTitle(page, "(2) Inbox · tidings");

  // Switched off: nothing more, hidden or not; the choice survives a reload.
  await toggle.uncheck();
  await server.publish({ userId: "jack", message: "after switching off" });
  await page.waitForSelector("#list li.item >> text=after switching off");
  await sleep(200);
  assert.equal(await page.evaluate(() => window.shown.length), 1);
  await toggle.check();
  await page.reload();
  await page.waitForSelector('#status[data-state="connected"]');
  assert.equal(await page.getByRole("checkbox", { name: "Desktop notifications" }).isChecked(), true);
  assert.equal(await page.evaluate(() => window.asked), 0); // already granted: not asked again
});
