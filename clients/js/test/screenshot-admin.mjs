// Regenerates docs/admin.png: a server with a few connections, publishes and
// one refused request, and the operator page watching it.
//
//   node test/screenshot-admin.mjs [output.png]

import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { launch } from "./chromium.mjs";
import { Server, mint, sleep } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const output = process.argv[2] ?? path.resolve(here, "../../../docs/admin.png");

const server = await new Server().start();
const browser = await launch();
const sockets = [];
try {
  for (const user of ["alice", "alice", "bob", "carol"]) {
    const ws = new WebSocket(`${server.wsUrl}?token=${mint(user)}`);
    await new Promise((resolve) => ws.once("open", resolve));
    sockets.push(ws);
  }
  await fetch(`${server.url}/v1/users/me/counts`); // no token: one error answered
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1200, height: 700 });
  await page.goto(`${server.url}/admin`);
  await page.fill("#token-input", mint("ops", { admin: true }));
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector('#status[data-state="connected"]');
  const publishing = (async () => {
    for (let i = 0; i < 40; i++) {
      await server.publish({ userIds: ["alice", "bob"], message: `update ${i}` });
      await sleep(100);
    }
  })();
  await page.waitForFunction(() => document.getElementById("rate-publishes").textContent !== "–");
  await sleep(1600);
  await page.evaluate(() => document.activeElement?.blur());
  await page.screenshot({ path: output });
  await publishing;
  console.log(`wrote ${output}`);
} finally {
  for (const ws of sockets) ws.close();
  await browser.close();
  await server.stop();
  server.cleanup();
}
