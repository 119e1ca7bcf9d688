// The JavaScript client against real tidings server processes (sections 1-4
// and 7 of the protocol): live delivery, resume, sends, dedupe, auth, storage.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TidingsClient, TidingsError, backoffDelay, serverUrls } from "../tidings.js";
import { newClient, record, tamperingWebSocket, waitFor } from "./helpers.mjs";
import { Server, mint } from "./server.mjs";

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe("against one server", () => {
  let server;
  const clients = [];
  const open = (user, options) => {
    const client = newClient(server, user, options);
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await new Server().start();
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
    server.cleanup();
  });

  test("a send resolves with its ack and the recipient gets it live", async () => {
    const bob = open("t1-bob");
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    const alice = open("t1-alice").connect();
    const ack = await alice.send("t1-bob", "hi bob", { order: 42 });
    assert.equal(ack.type, "ack");
    assert.equal(ack.seq, 1);
    assert.match(ack.notificationId, ULID);
    await waitFor(() => log.notifications.length === 1, { what: "bob's notification" });
    const [got] = log.notifications;
    assert.deepEqual(
      { id: got.notificationId, seq: got.seq, sender: got.sender, message: got.message, data: got.data },
      { id: ack.notificationId, seq: 1, sender: "t1-alice", message: "hi bob", data: { order: 42 } },
    );
    assert.deepEqual(log.states, ["connecting", "connected"]);
    assert.equal(bob.newestId, ack.notificationId);
  });

  test('since "latest" starts at the head; since 0 replays everything in order', async () => {
    for (const message of ["a", "b", "c"]) await server.publish({ userId: "t2-bob", message });
    const latest = open("t2-bob");
    const latestLog = record(latest);
    latest.connect();
    const caughtUp = await latest.once("caughtUp");
    assert.equal(caughtUp.seq, 3);
    assert.equal(latest.position.seq, 3);
    await server.publish({ userId: "t2-bob", message: "d" });
    await waitFor(() => latestLog.notifications.length === 1);
    assert.deepEqual(latestLog.messages(), ["d"]);

    const all = open("t2-bob", { since: 0 });
    const allLog = record(all);
    all.connect();
    await all.once("caughtUp");
    assert.deepEqual(allLog.messages(), ["a", "b", "c", "d"]);
    assert.deepEqual(allLog.notifications.map((n) => n.seq), [1, 2, 3, 4]);
    assert.deepEqual(allLog.refetch, []);
  });

  test("the token travels as a subprotocol, not in the URL, and the server answers tidings.v1", async () => {
    const Spy = tamperingWebSocket((frame) => [frame]);
    const token = mint("t0-carol");
    const carol = open("t0-carol", { token, WebSocket: Spy });
    carol.connect();
    await carol.once("caughtUp");
    const [socket] = Spy.sockets;
    assert.equal(socket.protocol, "tidings.v1");
    assert.ok(!socket.url.includes(token), socket.url);
    assert.ok(!server.log().includes(token));
  });

  test("an error frame rejects the send and the connection stays usable", async () => {
    const alice = open("t3-alice").connect();
    await assert.rejects(alice.send("", "to nobody"), (err) => {
      assert.ok(err instanceof TidingsError);
      assert.equal(err.code, "bad_request");
      return true;
    });
    const ack = await alice.send("t3-bob", "still fine");
    assert.equal(ack.seq, 1);
  });

  test("a send whose ack was lost is resent on reconnect and stored once", async () => {
    let swallowed = 0;
    const Lossy = tamperingWebSocket((frame, socket) => {
      if (frame.type === "ack" && swallowed === 0) {
        swallowed += 1;
        socket.close(); // the answer is lost with the connection
        return [];
      }
      return [frame];
    });
    const alice = open("t4-alice", { WebSocket: Lossy }).connect();
    const ack = await alice.send("t4-bob", "exactly once");
    assert.equal(swallowed, 1);
    assert.ok(Lossy.sockets.length >= 2, "the client reconnected");
    const bob = open("t4-bob", { since: 0 });
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    assert.deepEqual(log.messages(), ["exactly once"]);
    assert.equal(log.notifications[0].notificationId, ack.notificationId);
  });

  test("duplicate frames are delivered once", async () => {
    const Doubling = tamperingWebSocket((frame) =>
      frame.type === "notification" ? [frame, frame] : [frame],
    );
    const bob = open("t5-bob", { WebSocket: Doubling });
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    for (const message of ["x", "y", "z"]) await server.publish({ userId: "t5-bob", message });
    await waitFor(() => log.notifications.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(log.messages(), ["x", "y", "z"]);
  });

  test("a live seq jump with the history unreachable resyncs by reconnecting with since", async () => {
    let dropped = null;
    const Dropping = tamperingWebSocket((frame) => {
      if (frame.type === "notification" && frame.seq === 2 && dropped === null) {
        dropped = frame.notificationId;
        return [];
      }
      return [frame];
    });
    const failingFetch = async (url, init) => {
      if (String(url).includes("/history")) throw new TypeError("fetch failed");
      return fetch(url, init);
    };
    const bob = open("t6-bob", { WebSocket: Dropping, fetch: failingFetch });
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    for (const message of ["one", "two", "three"]) await server.publish({ userId: "t6-bob", message });
    await waitFor(() => log.notifications.length === 3, { what: "three notifications" });
    assert.deepEqual(log.messages(), ["one", "two", "three"]);
    assert.deepEqual(log.notifications.map((n) => n.seq), [1, 2, 3]);
    assert.ok(dropped, "a frame was dropped");
    assert.equal(Dropping.sockets.length, 2, "one reconnect filled the gap");
    assert.ok(log.errors.some((e) => /fetch failed/.test(e.message)));
  });

  test("caughtUp with complete:false asks the app to refetch its inbox", async () => {
    // Retention cut is simulated on the wire: this tests the client's reaction.
    const Trimmed = tamperingWebSocket((frame) =>
      frame.type === "caughtUp" ? [{ ...frame, complete: false }] : [frame],
    );
    const bob = open("t7-bob", { WebSocket: Trimmed, since: 0 });
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    assert.deepEqual(log.refetch, [{ reason: "incomplete" }]);
  });

  test("a refused token puts the client offline; a token function gets a fresh one", async () => {
    const bad = open("t8-bob", { token: mint("t8-bob", { secret: "wrong-secret-".padEnd(40, "y") }) });
    const log = record(bad);
    bad.connect();
    await waitFor(() => bad.state === "offline", { what: "offline" });
    assert.deepEqual(log.states, ["connecting", "offline"]);
    assert.equal(log.errors[0].code, "unauthorized");

    const calls = [];
    const factory = async () => {
      calls.push(Date.now());
      return calls.length === 1 ? mint("t8-bob", { ttl: -60 }) : mint("t8-bob");
    };
    const fresh = open("t8-bob", { token: factory });
    fresh.connect();
    await fresh.once("caughtUp");
    assert.equal(calls.length, 2);
    assert.equal(fresh.state, "connected");
  });

  test("a storage adapter lets a new client resume where the last one stopped", async () => {
    const saved = new Map();
    const storage = { getItem: (k) => saved.get(k) ?? null, setItem: (k, v) => saved.set(k, v) };
    const first = open("t9-bob", { storage, storageKey: "tidings:t9-bob" });
    const firstLog = record(first);
    first.connect();
    await first.once("caughtUp");
    await server.publish({ userId: "t9-bob", message: "seen 1" });
    await server.publish({ userId: "t9-bob", message: "seen 2" });
    await waitFor(() => firstLog.notifications.length === 2);
    first.close();
    assert.equal(JSON.parse(saved.get("tidings:t9-bob")).seq, 2);

    await server.publish({ userId: "t9-bob", message: "missed 3" });
    await server.publish({ userId: "t9-bob", message: "missed 4" });
    const second = open("t9-bob", { storage, storageKey: "tidings:t9-bob" });
    const secondLog = record(second);
    second.connect();
    await second.once("caughtUp");
    assert.deepEqual(secondLog.messages(), ["missed 3", "missed 4"]);
  });

  test("close() rejects the sends still waiting", async () => {
    const client = open("t10-alice"); // never connected: the send waits
    const pending = client.send("t10-bob", "never");
    client.close();
    await assert.rejects(pending, (err) => err.code === "closed");
    assert.equal(client.state, "closed");
  });
});

test("a token function renews the token over the open connection before it expires", async () => {
  const server = await new Server({ args: ["--token-expiry-notice", "2"] }).start();
  let made = 0;
  const frank = newClient(server, "te-frank", {
    token: async () => {
      made += 1;
      return mint("te-frank", { ttl: 4 }); // every token is short-lived
    },
  });
  try {
    const log = record(frank);
    frank.connect();
    await frank.once("caughtUp");
    await new Promise((resolve) => setTimeout(resolve, 9000)); // past two tokens' exp
    const ack = await frank.send("te-frank", "still here");
    assert.equal(ack.seq, 1);
    assert.ok(made >= 3, `tokens made: ${made}`);
    assert.deepEqual(log.states, ["connecting", "connected"]);
  } finally {
    frank.close();
    await server.stop();
    server.cleanup();
  }
});

test("across a server restart the client resumes: nothing missed, nothing twice", async () => {
  const server = await new Server().start();
  const bob = newClient(server, "bob");
  const alice = newClient(server, "alice");
  try {
    const log = record(bob);
    bob.connect();
    alice.connect();
    await bob.once("caughtUp");
    await alice.send("bob", "before");
    await waitFor(() => log.notifications.length === 1);

    await server.stop();
    await waitFor(() => bob.state === "reconnecting", { what: "reconnecting" });
    const queued = alice.send("bob", "sent while down");
    // The server is down: another node on the same data directory stores three more.
    const other = await new Server({ dataDir: server.dataDir }).start();
    for (const message of ["down 1", "down 2", "down 3"]) await other.publish({ userId: "bob", message });
    await other.stop();
    await server.start();

    const ack = await queued;
    assert.equal(ack.seq, 5);
    await waitFor(() => log.notifications.length === 5, { timeout: 10000, what: "five notifications" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(log.messages(), ["before", "down 1", "down 2", "down 3", "sent while down"]);
    assert.deepEqual(log.notifications.map((n) => n.seq), [1, 2, 3, 4, 5]);
    assert.deepEqual(log.states, ["connecting", "connected", "reconnecting", "connected"]);
  } finally {
    bob.close();
    alice.close();
    await server.stop();
    server.cleanup();
  }
});

test("backoff is full jitter under an exponential cap", () => {
  const options = { minDelay: 500, maxDelay: 30000 };
  assert.equal(backoffDelay(0, options, () => 0), 0);
  assert.equal(backoffDelay(0, options, () => 0.999), 499);
  assert.equal(backoffDelay(3, options, () => 0.5), 2000);
  assert.equal(backoffDelay(12, options, () => 0.999), 29970);
  assert.equal(backoffDelay(1000, options, () => 0.999), 29970);
});

test("server URLs: http(s) and ws(s) bases, with a path prefix", () => {
  assert.deepEqual(serverUrls("http://127.0.0.1:8000"), {
    http: "http://127.0.0.1:8000",
    ws: "ws://127.0.0.1:8000/ws",
  });
  assert.deepEqual(serverUrls("wss://example.com/notify/ws"), {
    http: "https://example.com/notify",
    ws: "wss://example.com/notify/ws",
  });
});

test("without a WebSocket constructor connect() says what to pass", () => {
  const client = new TidingsClient({ url: "http://127.0.0.1:1", token: "t" });
  client._WebSocket = undefined; // as in Node.js 20, which has no global WebSocket
  assert.throws(() => client.connect(), /pass the WebSocket option/);
});
