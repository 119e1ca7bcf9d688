// Real tidings server processes for the client tests, on free loopback ports.
// TIDINGS_PYTHON names the interpreter that has tidings installed (default:
// the repository's .venv, else python3).

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = `test-secret-${"x".repeat(32)}`;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

function python() {
  if (process.env.TIDINGS_PYTHON) return process.env.TIDINGS_PYTHON;
  const venv = path.join(ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

// A server still running when the test process ends (a failed test) is killed with it.
const running = new Set();
process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});

const b64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 token for `user`, as `tidings token` mints it. */
export function mint(user, { admin = false, ttl = 3600, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, iat: now, exp: now + ttl, ...(admin ? { admin: true } : {}) };
  const body = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = "tidings-js-") {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `tidings serve` in a child process; knows its URLs, mints tokens, publishes. */
export class Server {
  constructor({ dataDir = tempDir(), port = 0, args = [] } = {}) {
    this.dataDir = dataDir;
    this.port = port;
    this.args = args;
    this.proc = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  token(user, options) {
    return mint(user, options);
  }

  async start(timeout = 15000) {
    if (!this.port) this.port = await freePort();
    this.logPath = path.join(this.dataDir, `server-${this.port}.log`);
    const log = openSync(this.logPath, "a");
    this.proc = spawn(
      python(),
      ["-m", "tidings", "serve", "--port", String(this.port), "--data-dir", this.dataDir,
        "--drain-grace", "0.1", "--user-send", "any", ...this.args],
      { env: { ...process.env, TIDINGS_SECRET: SECRET }, stdio: ["ignore", log, log] },
    );
    const proc = this.proc;
    running.add(proc);
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    exited.then(() => running.delete(proc));
    this.exited = exited;
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`server exited:\n${this.log()}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return this;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`server did not start in ${timeout} ms:\n${this.log()}`);
  }

  log() {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  /** SIGINT twice (no drain grace): sockets close with 1012, then the process exits. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGINT");
    this.proc.kill("SIGINT");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
    await this.exited;
    clearTimeout(timer);
  }

  /** POST /v1/notifications with an admin token for `sender`; returns the answer's JSON. */
  async publish(body, { key = undefined, sender = "backend" } = {}) {
    const headers = { Authorization: `Bearer ${mint(sender, { admin: true })}`, "Content-Type": "application/json" };
    if (key) headers["Idempotency-Key"] = key;
    const response = await fetch(`${this.url}/v1/notifications`, { method: "POST", headers, body: JSON.stringify(body) });
    const json = await response.json();
    if (!response.ok) throw new Error(`publish failed: ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** True when the server has a route for `method path` (a missing route answers "no route ..."). */
  async hasRoute(method, routePath, user = "probe") {
    const response = await fetch(`${this.url}${routePath}`, {
      method,
      headers: { Authorization: `Bearer ${mint(user)}`, "Content-Type": "application/json" },
      body: method === "GET" || method === "HEAD" ? undefined : "{}",
    });
    if (response.status !== 404 && response.status !== 405) return true;
    const text = await response.text();
    return !/no route|method_not_allowed/.test(text);
  }

  cleanup() {
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
