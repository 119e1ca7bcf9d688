// Headless Debian Chromium driven by playwright-core (never a downloaded browser).

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.TIDINGS_CHROMIUM ?? "/usr/bin/chromium";

export function chromiumMissing() {
  return existsSync(CHROMIUM) ? null : `Chromium is not installed at ${CHROMIUM}`;
}

/** Launch Chromium with a fresh profile; close() also removes the profile. */
export async function launch() {
  const profile = mkdtempSync(path.join(os.tmpdir(), "tidings-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 760 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
