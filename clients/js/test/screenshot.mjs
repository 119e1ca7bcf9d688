// Regenerates docs/inbox.png: a server with --dev-login, a few notifications
// for alice (two already read), one sent live by bob through the JS client,
// and alice's page answering him from the send form.
//
//   node test/screenshot.mjs [output.png]

import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { TidingsClient } from "../tidings.js";
import { launch } from "./chromium.mjs";
import { Server, mint, sleep } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const output = process.argv[2] ?? path.resolve(here, "../../../docs/inbox.png");

const server = await new Server({ args: ["--dev-login"] }).start();
const browser = await launch();
try {
  const earlier = [
    ["billing", "Invoice #1042 is ready to download", { invoice: 1042, amount: "129.00 EUR" }],
    ["deploys", "Deploy of api@4f2c1e to production finished in 2m 14s", { env: "production" }],
    ["calendar", "Design review starts in 15 minutes", { room: "4B" }],
    ["carol", "Carol mentioned you in \u201cQ4 launch plan\u201d", undefined],
  ];
  const ids = [];
  const tags = { billing: ["billing"], deploys: ["ops", "production"], calendar: ["meetings"] };
  for (const [sender, message, data] of earlier) {
    const body = { userId: "alice", message, data, tags: tags[sender] ?? [] };
    ids.push((await server.publish(body, { sender })).notificationId);
  }
  await fetch(`${server.url}/v1/users/alice/notifications/read`, {
    method: "POST",
    headers: { Authorization: `Bearer ${mint("ops", { admin: true })}`, "Content-Type": "application/json" },
    body: JSON.stringify({ ids: ids.slice(0, 2) }),
  });

  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1200, height: 700 });
  await page.goto(`${server.url}/inbox`);
  await page.fill("#dev-user", "alice");
  await page.click("#dev-login-form button[type=submit]");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForFunction(() => document.querySelectorAll("#list li.item").length === 4);

  const bob = new TidingsClient({ url: server.url, token: mint("bob"), WebSocket }).connect();
  await bob.send("alice", "Lunch at noon? I booked the usual place.");
  bob.close();
  await page.waitForFunction(() => document.querySelectorAll("#list li.item").length === 5);

  await page.fill("#send-to", "bob");
  await page.fill("#send-message", "Sounds good, see you there!");
  await page.fill("#send-data", '{"reply_to": "lunch"}');
  await page.click("#send-button");
  await page.waitForSelector("#send-result.ok");
  await page.fill("#send-message", "");
  await page.fill("#send-data", "");
  await page.evaluate(() => document.activeElement?.blur());
  await page.mouse.move(0, 0);
  await sleep(300);
  await page.screenshot({ path: output });
  console.log(`wrote ${output}`);
} finally {
  await browser.close();
  await server.stop();
  server.cleanup();
}
