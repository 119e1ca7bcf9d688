// Runs a page snippet from the docs (an HTML block) in headless Chromium, as
// the page of an application served from the tidings server's origin:
//
//   node page_snippet.mjs ORIGIN BLOCK.html...
//
// The application's own parts the snippet calls are stand-ins that record
// their calls: userId (DOC_USER), showToast, setIndicator, reloadInbox, and
// /my-app/tidings-token (answers DOC_TOKEN). Once the client reports
// "connected", a notification is published to DOC_USER (with DOC_ADMIN_TOKEN)
// and must reach showToast. Each block gets a page of its own in one browser.
// Exit status 0 when every one did, with no page error.

import { readFileSync } from "node:fs";
import { launch } from "./chromium.mjs";

const [origin, ...blockFiles] = process.argv.slice(2);
const { DOC_USER, DOC_TOKEN, DOC_ADMIN_TOKEN } = process.env;
const FED = "fed by the doc test";
const STAND_INS = `<script>
  window.docCalls = { toast: [], state: [] };
  window.userId = ${JSON.stringify(DOC_USER)};
  window.showToast = (sender, message) => window.docCalls.toast.push([sender, message]);
  window.setIndicator = (state) => window.docCalls.state.push(state);
  window.reloadInbox = () => {};
</script>
`;

async function run(page, blockFile, fed) {
  await page.route(`${origin}/my-app/tidings-token`, (route) =>
    route.fulfill({ contentType: "text/plain", body: DOC_TOKEN }),
  );
  // A document of the server's origin (a fulfilled one would not count as local
  // to Chromium's local network checks), then the application's page in it.
  await page.goto(`${origin}/healthz`);
  await page.setContent(STAND_INS + readFileSync(blockFile, "utf8"));
  await page.waitForFunction(() => window.docCalls.state.includes("connected"), null, { timeout: 15000 });
  const published = await fetch(`${origin}/v1/notifications`, {
    method: "POST",
    headers: { Authorization: `Bearer ${DOC_ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ userId: DOC_USER, message: fed }),
  });
  if (!published.ok) throw new Error(`publish: ${published.status} ${await published.text()}`);
  await page.waitForFunction((m) => window.docCalls.toast.some(([, message]) => message === m), fed, {
    timeout: 15000,
  });
}

const browser = await launch();
const errors = [];
try {
  for (const [index, blockFile] of blockFiles.entries()) {
    const page = await browser.context.newPage();
    page.on("pageerror", (error) => errors.push(`${blockFile}: ${error.message}`));
    page.on("console", (message) => console.error(`${blockFile}: console: ${message.text()}`));
    try {
      await run(page, blockFile, `${FED} ${index}`);
    } catch (error) {
      const calls = await page.evaluate(() => window.docCalls).catch(() => undefined);
      errors.push(`${blockFile}: ${error} (calls: ${JSON.stringify(calls)})`);
    }
    await page.close();
  }
} finally {
  await browser.close();
}
if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
