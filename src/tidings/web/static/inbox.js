// The live inbox page: the tidings client, a bell with the unread count, the
// list (newest first), marks, and a form to send. No build step, no framework.

import { TidingsClient } from "/static/tidings.js";

const TOKEN_KEY = "tidings.token";
const LIST_LIMIT = 50;
const $ = (id) => document.getElementById(id);
const devLogin = document.querySelector('meta[name="tidings-dev-login"]').content === "true";

const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  connected: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
  closed: "signed out",
};

let client = null;
let items = new Map();
let unread = null; // the server's count; null while unknown (then counted here)
let listed = false;
let early = new Set(); // live arrivals before the first list answer
// Counts pushed over the connection are newer than the answer to a request
// sent before them: an answer applies its counts only if none came meanwhile.
let countsSeen = 0;
let unreadOnly = false;

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

async function mintDevToken(userId) {
  const response = await fetch("/dev/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message ?? `sign-in failed (HTTP ${response.status})`);
  return body.token;
}

// -- sign-in ------------------------------------------------------------------

function showSignIn(message = "") {
  $("app").hidden = true;
  $("who").hidden = true;
  $("bell").hidden = true;
  $("sign-in").hidden = false;
  $("dev-login-form").hidden = !devLogin;
  $("token-form").hidden = devLogin;
  $("sign-in-error").hidden = !message;
  $("sign-in-error").textContent = message;
  setState("idle");
  setBadge(0);
  (devLogin ? $("dev-user") : $("token-input")).focus();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  client?.close();
  client = null;
  showSignIn(message);
}

$("dev-login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const token = await mintDevToken($("dev-user").value.trim());
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token);
  } catch (err) {
    showSignIn(err.message);
  }
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!claims(token)?.sub) {
    showSignIn("That does not look like a tidings token.");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  start(token);
});

$("sign-out").addEventListener("click", () => signOut());

// -- the inbox ----------------------------------------------------------------

function start(token) {
  const user = claims(token)?.sub;
  if (!user) {
    signOut("The saved token is not readable; sign in again.");
    return;
  }
  items = new Map();
  unread = null;
  listed = false;
  early = new Set();
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("bell").hidden = false;
  $("who-name").textContent = user;
  $("avatar").textContent = user.slice(0, 1).toUpperCase();
  $("notice").hidden = true;
  render();

  let current = token;
  const tokenSource = devLogin
    ? async () => {
        // Dev sign-in: mint a new token when the one we have is about to expire.
        if ((claims(current)?.exp ?? 0) * 1000 - Date.now() < 60_000) {
          current = await mintDevToken(user);
          sessionStorage.setItem(TOKEN_KEY, current);
        }
        return current;
      }
    : token;
  client = new TidingsClient({
    token: tokenSource,
    storage: localStorage,
    storageKey: `tidings:${location.host}:${user}`,
  });
  const mine = client;
  client.on("state", (state, detail) => {
    if (mine !== client) return;
    setState(state);
    if (state === "offline" && detail.reason === "unauthorized") {
      signOut("The server refused this token (expired or wrong server); sign in again.");
    }
  });
  client.on("notification", (n) => {
    console.debug("tidings:notification", n.notificationId, n.seq, n.message);
    if (items.has(n.notificationId)) return;
    items.set(n.notificationId, { ...n, readAt: n.readAt ?? null });
    if (!listed) early.add(n.notificationId);
    else if (unread !== null && !n.readAt) unread += 1;
    render();
  });
  client.on("inbox", applyInboxChange);
  client.on("refetch", () => loadInbox());
  // Connect first: once caught up, the list covers everything before the live stream.
  client.once("caughtUp", () => loadInbox());
  client.connect();
}

async function loadInbox() {
  const mine = client;
  try {
    const page = await mine.list({ limit: LIST_LIMIT });
    if (mine !== client) return;
    const listedIds = new Set(page.items.map((item) => item.notificationId));
    for (const item of page.items) items.set(item.notificationId, item);
    let extra = 0;
    for (const id of early) if (!listedIds.has(id) && !items.get(id)?.readAt) extra += 1;
    unread = (page.counts?.unread ?? 0) + extra;
  } catch (err) {
    if (mine !== client) return;
    showNotice(`The inbox history is not available (${err.message}); showing what arrives live.`);
  }
  listed = true;
  early.clear();
  render();
}

function applyInboxChange(frame) {
  const { action, ids, upTo } = frame.change ?? {};
  const hit = (id) => (ids ? ids.includes(id) : upTo !== undefined && id <= upTo);
  const now = new Date().toISOString();
  for (const [id, item] of items) {
    if (!hit(id)) continue;
    if (action === "read") item.readAt ??= now;
    else if (action === "unread") item.readAt = null;
    else if (action === "archive" || action === "delete" || action === "expire") items.delete(id);
  }
  if (typeof frame.unread === "number") {
    unread = frame.unread;
    countsSeen += 1;
  }
  render();
}

async function markRead(id) {
  const item = items.get(id);
  if (!item || item.readAt) return;
  item.readAt = new Date().toISOString();
  if (unread !== null) unread = Math.max(0, unread - 1);
  render();
  const seen = countsSeen;
  try {
    const answer = await client.markRead([id]);
    if (answer?.counts && seen === countsSeen) unread = answer.counts.unread;
  } catch (err) {
    item.readAt = null;
    if (unread !== null) unread += 1;
    showNotice(`Could not mark it read: ${err.message}`);
  }
  render();
}

$("mark-all").addEventListener("click", async () => {
  if (!client) return;
  const upTo = client.newestId;
  const seen = countsSeen;
  try {
    const answer = await client.markAllRead();
    const now = new Date().toISOString();
    for (const [id, item] of items) if (upTo && id <= upTo) item.readAt ??= now;
    if (answer?.counts && seen === countsSeen) unread = answer.counts.unread;
  } catch (err) {
    showNotice(`Could not mark all read: ${err.message}`);
  }
  render();
});

$("bell").addEventListener("click", () => {
  unreadOnly = !unreadOnly;
  $("bell").setAttribute("aria-pressed", String(unreadOnly));
  render();
});

// -- sending ------------------------------------------------------------------

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("send-result");
  const to = $("send-to").value.trim();
  const message = $("send-message").value;
  let data;
  const raw = $("send-data").value.trim();
  if (raw) {
    try {
      data = JSON.parse(raw);
    } catch {
      data = null;
    }
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      result.className = "result error";
      result.textContent = "Data must be a JSON object, like {\"order\": 42}.";
      return;
    }
  }
  result.className = "result";
  result.textContent = client.state === "connected" ? "Sending…" : "Queued until the connection is back…";
  $("send-button").disabled = true;
  try {
    const ack = await client.send(to, message, data);
    result.className = "result ok";
    result.textContent = `Sent to ${to} (#${ack.seq} in their stream).`;
    $("send-message").value = "";
  } catch (err) {
    result.className = "result error";
    result.textContent = `Not sent: ${err.message}`;
  } finally {
    $("send-button").disabled = false;
  }
});

// -- rendering ----------------------------------------------------------------

function setState(state) {
  $("status").dataset.state = state;
  $("status-text").textContent = STATE_TEXT[state] ?? state;
}

function setBadge(count) {
  const badge = $("badge");
  badge.hidden = count === 0;
  badge.textContent = count > 99 ? "99+" : String(count);
  $("unread-label").textContent = `${count} unread`;
  document.title = count ? `(${count}) Inbox · tidings` : "Inbox · tidings";
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render() {
  const sorted = [...items.values()].sort((a, b) => (a.notificationId < b.notificationId ? 1 : -1));
  const localUnread = sorted.filter((item) => !item.readAt).length;
  setBadge(unread ?? localUnread);
  const shown = unreadOnly ? sorted.filter((item) => !item.readAt) : sorted;
  const list = $("list");
  const fragment = document.createDocumentFragment();
  for (const item of shown) {
    const li = element("li", item.readAt ? "item" : "item unread");
    li.dataset.id = item.notificationId;
    li.dataset.seq = String(item.seq);
    const button = element("button", "item-body");
    button.type = "button";
    button.title = item.readAt ? "Read" : "Mark read";
    button.addEventListener("click", () => markRead(item.notificationId));
    button.append(element("span", "unread-dot"));
    const main = element("div", "item-main");
    const top = element("div", "item-top");
    top.append(element("span", "sender", item.sender ?? "system"));
    if (item.topic) top.append(element("span", "topic", `#${item.topic}`));
    const time = element("time", "when", ago(item.createdAt));
    time.dateTime = item.createdAt;
    time.title = new Date(item.createdAt).toLocaleString();
    top.append(time);
    main.append(top, element("p", "message", item.message));
    if (item.data && Object.keys(item.data).length) {
      main.append(element("code", "data", JSON.stringify(item.data)));
    }
    button.append(main);
    li.append(button);
    fragment.append(li);
  }
  list.replaceChildren(fragment);
  $("empty").hidden = shown.length > 0;
  $("mark-all").disabled = (unread ?? localUnread) === 0;
}

setInterval(() => {
  for (const time of document.querySelectorAll("time.when")) time.textContent = ago(time.dateTime);
}, 30_000);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();
