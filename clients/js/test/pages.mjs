// What the page scenarios share: a browser and servers per scenario, a page
// that records its console, the dev sign-in, and readers of the badge and list.

import assert from "node:assert/strict";
import { chromiumMissing, launch } from "./chromium.mjs";

export function needChromium(t) {
  const missing = chromiumMissing();
  if (!missing) return true;
  if (process.env.CI) throw new Error(`${missing}; the Makefile's browser-deps target installs it`);
  t.skip(`requires Chromium: ${missing}`);
  return false;
}

/** A browser and servers for one scenario, all stopped at the end. */
export async function stage(t, ...servers) {
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    for (const server of servers) {
      await server.stop();
      server.cleanup();
    }
  });
  return browser;
}

export async function openPage(browser) {
  const page = await browser.context.newPage();
  page.consoleLines = [];
  page.on("console", (message) => page.consoleLines.push(message.text()));
  page.on("pageerror", (error) => page.consoleLines.push(`pageerror: ${error.message}`));
  return page;
}

export async function signIn(page, server, user) {
  await page.goto(`${server.url}/`); // redirects to /inbox
  assert.equal(new URL(page.url()).pathname, "/inbox");
  await page.fill("#dev-user", user);
  await page.click("#dev-login-form button[type=submit]");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForFunction((name) => document.getElementById("who-name").textContent === name, user);
}

export const badge = (page) => page.$eval("#badge", (b) => (b.hidden ? 0 : Number(b.textContent)));
export const messages = (page) => page.$$eval("#list li.item .message", (els) => els.map((e) => e.textContent));
export const waitForBadge = (page, count, timeout = 15000) =>
  page.waitForFunction(
    (n) => {
      const b = document.getElementById("badge");
      return (b.hidden ? 0 : Number(b.textContent)) === n;
    },
    count,
    { timeout },
  );

/** The inbox page's title, which carries the unread count. */
export const waitForTitle = (page, title, timeout = 15000) =>
  page.waitForFunction((want) => document.title === want, title, { timeout });

/** The list item showing `message`. */
export const itemOf = (page, message) =>
  page.locator("#list li.item").filter({ has: page.locator(".message").getByText(message, { exact: true }) });
