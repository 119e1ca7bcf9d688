// Shared pieces of the client tests: a client wired to a test server, an
// event recorder, and WebSocket subclasses that tamper with incoming frames
// the way a lossy network or a misbehaving proxy would.

import WebSocket from "ws";
import { TidingsClient } from "../tidings.js";
import { mint, sleep } from "./server.mjs";

export function newClient(server, user, options = {}) {
  return new TidingsClient({
    url: server.url,
    token: mint(user),
    WebSocket,
    minDelay: 50,
    maxDelay: 400,
    ...options,
  });
}

/** Records a client's notifications, states, errors and caughtUp frames. */
export function record(client) {
  const log = { notifications: [], states: [], errors: [], caughtUp: [], refetch: [], inbox: [] };
  client.on("notification", (n) => log.notifications.push(n));
  client.on("state", (s) => log.states.push(s));
  client.on("error", (e) => log.errors.push(e));
  client.on("caughtUp", (c) => log.caughtUp.push(c));
  client.on("refetch", (r) => log.refetch.push(r));
  client.on("inbox", (f) => log.inbox.push(f));
  log.messages = () => log.notifications.map((n) => n.message);
  return log;
}

export async function waitFor(predicate, { timeout = 5000, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(10);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
}

/** A ws WebSocket whose incoming frames pass through `filter(frame, socket)`,
 * which returns the frames to hand on (none, the same, or others). */
export function tamperingWebSocket(filter) {
  const sockets = [];
  class Tampering extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }

    set onmessage(listener) {
      super.onmessage = (event) => {
        for (const frame of filter(JSON.parse(String(event.data)), this)) {
          listener({ data: JSON.stringify(frame) });
        }
      };
    }

    get onmessage() {
      return super.onmessage;
    }
  }
  Tampering.sockets = sockets;
  return Tampering;
}

export function once(client, event) {
  return client.once(event);
}
