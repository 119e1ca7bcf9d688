// The client's inbox and topic features against a real server (protocol
// section 8). A test whose endpoint the server does not have yet is skipped
// with a message naming that endpoint; it runs as soon as the endpoint exists.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { newClient, record, tamperingWebSocket, waitFor } from "./helpers.mjs";
import { Server, sleep } from "./server.mjs";

describe("inbox and topics (protocol section 8)", () => {
  let server;
  const clients = [];
  const open = (user, options) => {
    const client = newClient(server, user, options);
    clients.push(client);
    return client;
  };
  const requires = async (t, method, path) => {
    if (await server.hasRoute(method, path)) return true;
    t.skip(`blocked: the server has no ${method} ${path.replace("/me/", "/{user}/")} yet`);
    return false;
  };

  before(async () => {
    server = await new Server().start();
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
    server.cleanup();
  });

  test("list pages newest first with counts; counts() agrees", async (t) => {
    if (!(await requires(t, "GET", "/v1/users/me/inbox"))) return;
    if (!(await requires(t, "GET", "/v1/users/me/counts"))) return;
    for (const message of ["a", "b", "c"]) await server.publish({ userId: "i1-bob", message });
    const bob = open("i1-bob");
    const page = await bob.list({ limit: 2 });
    assert.deepEqual(page.items.map((i) => i.message), ["c", "b"]);
    assert.deepEqual(page.counts, { total: 3, unread: 3, unseen: 3 });
    assert.ok(page.next);
    const rest = await bob.list({ limit: 2, after: page.next });
    assert.deepEqual(rest.items.map((i) => i.message), ["a"]);
    assert.equal(rest.next, null);
    assert.deepEqual(await bob.counts(), { total: 3, unread: 3, unseen: 3 });
    assert.equal(bob.newestId, page.items[0].notificationId);
  });

  test("markUnread, archive and delete change the inbox and its counts", async (t) => {
    for (const message of ["a", "b", "c"]) await server.publish({ userId: "i9-bob", message });
    const bob = open("i9-bob");
    const { items } = await bob.list();
    const [c, b, a] = items.map((i) => i.notificationId);
    await bob.markRead([b]);
    const again = await bob.markUnread([b]);
    assert.equal(again.changed, 1);
    assert.equal(again.counts.unread, 3);
    const archived = await bob.archive([a]);
    assert.deepEqual([archived.changed, archived.counts.total, archived.counts.unread], [1, 2, 2]);
    assert.equal(await bob.delete(c), undefined);
    assert.deepEqual((await bob.list()).items.map((i) => i.message), ["b"]);
    assert.deepEqual((await bob.list({ archived: "only" })).items.map((i) => i.message), ["a"]);
    await assert.rejects(bob.delete(c), (err) => err.status === 404 && err.code === "not_found");
    assert.deepEqual(await bob.counts(), { total: 1, unread: 1, unseen: 1 });
  });

  test("markRead by ids changes the counts and the read filter", async (t) => {
    if (!(await requires(t, "POST", "/v1/users/me/notifications/read"))) return;
    for (const message of ["a", "b", "c"]) await server.publish({ userId: "i2-bob", message });
    const bob = open("i2-bob");
    const { items } = await bob.list();
    const answer = await bob.markRead([items[1].notificationId]);
    assert.equal(answer.changed, 1);
    assert.equal(answer.counts.unread, 2);
    const unread = await bob.list({ read: false });
    assert.deepEqual(unread.items.map((i) => i.message), ["c", "a"]);
  });

  test("markAllRead stops at the newest notification the client has seen", async (t) => {
    if (!(await requires(t, "POST", "/v1/users/me/notifications/read"))) return;
    for (const message of ["a", "b"]) await server.publish({ userId: "i3-bob", message });
    const bob = open("i3-bob");
    await bob.list();
    await server.publish({ userId: "i3-bob", message: "newer, not seen yet" });
    const answer = await bob.markAllRead();
    assert.equal(answer.changed, 2);
    assert.equal(answer.counts.unread, 1);
    const unread = await bob.list({ read: false });
    assert.deepEqual(unread.items.map((i) => i.message), ["newer, not seen yet"]);
  });

  test("a mark made on one connection is pushed to the user's others", async (t) => {
    if (!(await requires(t, "POST", "/v1/users/me/notifications/read"))) return;
    await server.publish({ userId: "i4-bob", message: "read me" });
    const tab1 = open("i4-bob");
    const tab2 = open("i4-bob");
    const log2 = record(tab2);
    tab1.connect();
    tab2.connect();
    await Promise.all([tab1.once("caughtUp"), tab2.once("caughtUp")]);
    const { items } = await tab1.list();
    await tab1.markRead([items[0].notificationId]);
    await waitFor(() => log2.inbox.length === 1, { what: "the inbox frame on the other tab" });
    const [frame] = log2.inbox;
    assert.deepEqual(frame.change, { action: "read", ids: [items[0].notificationId] });
    assert.equal(frame.unread, 0);
  });

  test("a live seq jump is filled from the history before what follows", async (t) => {
    if (!(await requires(t, "GET", "/v1/users/me/history"))) return;
    const Dropping = tamperingWebSocket((frame) =>
      frame.type === "notification" && frame.seq === 2 ? [] : [frame],
    );
    const bob = open("i5-bob", { WebSocket: Dropping });
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    for (const message of ["one", "two", "three", "four"]) {
      await server.publish({ userId: "i5-bob", message });
    }
    await waitFor(() => log.notifications.length === 4, { what: "four notifications" });
    assert.deepEqual(log.messages(), ["one", "two", "three", "four"]);
    assert.deepEqual(log.notifications.map((n) => n.seq), [1, 2, 3, 4]);
    assert.equal(Dropping.sockets.length, 1, "filled over HTTP, without reconnecting");
    assert.deepEqual(log.errors, []);
  });

  test("topics: subscribe, receive, and resume with topics=name:seq", async (t) => {
    if (!(await requires(t, "GET", "/v1/users/me/topics"))) return;
    const bob = open("i6-bob");
    const log = record(bob);
    bob.connect();
    await bob.once("caughtUp");
    const ack = await bob.subscribe("news");
    assert.equal(ack.topic, "news");
    await server.publish({ topic: "news", message: "n1" });
    await waitFor(() => log.notifications.length === 1);
    assert.equal(log.notifications[0].topic, "news");
    const seq = bob.position.topics.news;
    assert.equal(typeof seq, "number");

    await server.stop();
    const other = await new Server({ dataDir: server.dataDir }).start();
    await other.publish({ topic: "news", message: "n2" });
    await other.publish({ topic: "news", message: "n3" });
    await other.stop();
    await server.start();
    await waitFor(() => log.notifications.length === 3, { timeout: 10000, what: "the topic replay" });
    await sleep(100);
    assert.deepEqual(log.messages(), ["n1", "n2", "n3"]);
    assert.equal(log.caughtUp.at(-1).topics.news, seq + 2);
  });
});
