// The live inbox page: the tidings client, a bell and the title with the
// server's exact unread count, the list (newest first, older pages on demand),
// per-item read / unread / archive / delete, an unread-only filter, desktop
// notifications, and a form to send. No build step, no framework.

import { TidingsClient } from "/static/tidings.js";
import { desktopAlerts } from "/static/inbox-alerts.js";
import { ago, itemElement } from "/static/inbox-view.js";

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
let next = undefined; // the cursor of the next older page; null: none left
let live = false; // caught up once: what arrives now is new
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
  next = undefined;
  live = false;
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
    if (!n.readAt) {
      if (unread !== null) unread += 1; // shown now; the server's count follows
      applied = issued; // answers to requests sent before it do not count it
      refreshCountsSoon();
      if (live) notify(n);
    }
    render();
  });
  client.on("inbox", applyInboxChange);
  client.on("refetch", () => loadFirstPage());
  // Connect first: once caught up, the list covers everything before the live stream.
  // Every later catch-up (a reconnect) reads the first page and the counts again:
  // what changed elsewhere while this tab was away is in neither replay.
  client.on("caughtUp", () => {
    if (mine !== client) return;
    live = true;
    loadFirstPage();
  });
  client.connect();
}

// Counts come from the server (pushes and answers) in an order of their own:
// each request takes a ticket when it is sent, and an answer applies its
// counts only if nothing newer (a later request's answer, a push) did already.
let issued = 0;
let applied = 0;

function applyCounts(counts, ticket) {
  if (typeof counts?.unread !== "number" || ticket <= applied) return;
  applied = ticket;
  unread = counts.unread;
}

async function refreshCounts() {
  const mine = client;
  const ticket = ++issued;
  try {
    const counts = await mine.counts();
    if (mine === client) applyCounts(counts, ticket);
  } catch {
    // Offline: the next catch-up reads them again.
  }
  render();
}

let countsTimer = null;
function refreshCountsSoon() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(refreshCounts, 200);
}

async function loadPage(after) {
  const mine = client;
  const ticket = ++issued;
  const page = await mine.list({ limit: LIST_LIMIT, after });
  if (mine !== client) return null;
  for (const item of page.items) items.set(item.notificationId, item);
  applyCounts(page.counts, ticket);
  return page;
}

async function loadFirstPage() {
  const known = new Set(items.keys()); // what arrives while the page loads is newer than it
  try {
    const page = await loadPage(undefined);
    if (!page) return;
    // The page is the truth for the newest items down to its last one (all of
    // them when it is the only page): drop what was archived or deleted meanwhile.
    const listed = new Set(page.items.map((item) => item.notificationId));
    const oldest = page.next === null ? "" : page.items.at(-1)?.notificationId;
    for (const id of known) if (oldest !== undefined && id >= oldest && !listed.has(id)) items.delete(id);
    if (next === undefined || next === null || page.next === null) next = page.next;
  } catch (err) {
    showNotice(`The inbox history is not available (${err.message}); showing what arrives live.`);
  }
  render();
}

$("load-more").addEventListener("click", async () => {
  if (!next) return;
  $("load-more").disabled = true;
  try {
    const page = await loadPage(next);
    if (page) next = page.next;
  } catch (err) {
    showNotice(`Could not load older notifications: ${err.message}`);
  } finally {
    $("load-more").disabled = false;
  }
  render();
});

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
  if (action === "unarchive") loadFirstPage(); // back in the inbox: the page has them
  applyCounts(frame, ++issued);
  render();
}

/** Change one item here at once, then on the server; undo if the server says no. */
async function change(id, verb, local, request) {
  const item = items.get(id);
  if (!item || !client) return;
  const before = { ...item };
  const wasUnread = !item.readAt;
  local(item);
  const nowUnread = items.has(id) && !item.readAt;
  if (unread !== null) unread = Math.max(0, unread + (nowUnread ? 1 : 0) - (wasUnread ? 1 : 0));
  render();
  const ticket = ++issued;
  applied = Math.max(applied, ticket - 1); // answers to earlier requests are older than this
  try {
    const answer = await request();
    applyCounts(answer?.counts, ticket);
    if (!answer?.counts) refreshCounts();
  } catch (err) {
    items.set(id, before);
    refreshCounts();
    showNotice(`Could not ${verb}: ${err.message}`);
  }
  render();
}

const actions = {
  read: (id) => {
    if (items.get(id)?.readAt) return;
    change(id, "mark it read", (item) => (item.readAt = new Date().toISOString()), () => client.markRead([id]));
  },
  unread: (id) => change(id, "mark it unread", (item) => (item.readAt = null), () => client.markUnread([id])),
  archive: (id) => change(id, "archive it", () => items.delete(id), () => client.archive([id])),
  remove: (id) => change(id, "delete it", () => items.delete(id), () => client.delete(id)),
};

$("mark-all").addEventListener("click", async () => {
  if (!client) return;
  const upTo = client.newestId;
  const ticket = ++issued;
  try {
    const answer = await client.markAllRead();
    const now = new Date().toISOString();
    for (const [id, item] of items) if (upTo && id <= upTo) item.readAt ??= now;
    applyCounts(answer?.counts, ticket);
  } catch (err) {
    showNotice(`Could not mark all read: ${err.message}`);
  }
  render();
});

function setUnreadOnly(on) {
  unreadOnly = on;
  $("unread-only").checked = on;
  $("bell").setAttribute("aria-pressed", String(on));
  render();
}

$("bell").addEventListener("click", () => setUnreadOnly(!unreadOnly));
$("unread-only").addEventListener("change", () => setUnreadOnly($("unread-only").checked));

const notify = desktopAlerts($("desktop-alerts"), showNotice);

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

function render() {
  const sorted = [...items.values()].sort((a, b) => (a.notificationId < b.notificationId ? 1 : -1));
  const localUnread = sorted.filter((item) => !item.readAt).length;
  setBadge(unread ?? localUnread);
  const shown = unreadOnly ? sorted.filter((item) => !item.readAt) : sorted;
  const fragment = document.createDocumentFragment();
  for (const item of shown) fragment.append(itemElement(item, actions));
  $("list").replaceChildren(fragment);
  $("empty").hidden = shown.length > 0;
  $("empty-title").textContent = unreadOnly && sorted.length ? "No unread notifications" : "You're all caught up";
  $("mark-all").disabled = (unread ?? localUnread) === 0;
  $("load-more").hidden = !next;
}

setInterval(() => {
  for (const time of document.querySelectorAll("time.when")) time.textContent = ago(time.dateTime);
}, 30_000);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();
