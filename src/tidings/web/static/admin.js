// The operator page: asks for an admin token (kept in this tab's
// sessionStorage, sent only in the Authorization header), then polls
// GET /v1/admin/overview and shows nodes, connections, users online, rates,
// health and the recent errors. Rates are computed here, from the counters of
// two answers of the same node. No build step, no framework.

const TOKEN_KEY = "tidings.adminToken";
const POLL_MS = 1500;
const $ = (id) => document.getElementById(id);

let token = null;
let timer = null;
let previous = null; // the last answer: {nodeId, at (ms), counters}
let generation = 0; // bumps on every sign-in and sign-out, so a late answer is dropped

class Refused extends Error {}

async function fetchOverview(withToken) {
  const response = await fetch("/v1/admin/overview", {
    headers: { Authorization: `Bearer ${withToken}` },
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401 || response.status === 403) {
    throw new Refused(body?.error?.message ?? `refused (HTTP ${response.status})`);
  }
  if (!response.ok) throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  return body;
}

// -- sign-in ------------------------------------------------------------------

function showSignIn(message = "") {
  generation += 1;
  clearTimeout(timer);
  token = null;
  previous = null;
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("answered-by").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").hidden = !message;
  $("sign-in-error").textContent = message;
  setState("idle", "not signed in");
  $("token-input").focus();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = $("token-input").value.trim();
  try {
    const first = await fetchOverview(candidate);
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $("token-input").value = "";
    start(candidate, first);
  } catch (err) {
    showSignIn(err instanceof Refused ? `The server refused this token: ${err.message}` : err.message);
  }
});

$("sign-out").addEventListener("click", () => signOut());

// -- polling ------------------------------------------------------------------

function start(withToken, first = null) {
  generation += 1;
  token = withToken;
  previous = null;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  if (first) show(first);
  poll(generation, first ? POLL_MS : 0);
}

function poll(mine, delay) {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    try {
      const overview = await fetchOverview(token);
      if (mine !== generation) return;
      show(overview);
    } catch (err) {
      if (mine !== generation) return;
      if (err instanceof Refused) {
        signOut(`The server refused this token: ${err.message}`);
        return;
      }
      setState("reconnecting", `unreachable (${err.message}); retrying`);
    }
    if (mine === generation) poll(mine, POLL_MS);
  }, delay);
}

// -- rendering ----------------------------------------------------------------

function setState(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const number = (n) => n.toLocaleString("en-US");

function rates(overview) {
  const at = Date.parse(overview.time);
  const before = previous;
  previous = { nodeId: overview.nodeId, at, counters: overview.counters };
  // Another node answered (a balancer), or it restarted: no rate until the next answer.
  if (!before || before.nodeId !== overview.nodeId || at <= before.at) return null;
  const seconds = (at - before.at) / 1000;
  const rate = (name) => Math.max(0, overview.counters[name] - before.counters[name]) / seconds;
  return { publishes: rate("publishes"), deliveries: rate("deliveries"), handshakes: rate("handshakes") };
}

function show(overview) {
  setState("connected", "live");
  $("answered-by").hidden = false;
  $("answered-by").textContent = `node ${overview.nodeId} · v${overview.version}`;
  const { connections, counters } = overview;
  $("connections-total").textContent = number(connections.total);
  $("connections-by-transport").textContent = Object.entries(connections.byTransport)
    .map(([transport, count]) => `${transport} ${number(count)} here`)
    .join(" · ");
  $("users-online").textContent = number(overview.usersOnline);
  const per = rates(overview);
  for (const name of ["publishes", "deliveries", "handshakes"]) {
    $(`rate-${name}`).textContent = per ? per[name].toFixed(1) : "–";
    $(`total-${name}`).textContent = `${number(counters[name])} since start`;
  }

  const health = overview.health;
  $("health-status").textContent = health.status;
  $("health-status").dataset.status = health.status;
  const checks = document.createDocumentFragment();
  for (const name of ["store", "broker", "cluster"]) {
    checks.append(element("dt", "", name), element("dd", health[name] === "ok" ? "ok" : "bad", health[name]));
  }
  $("health").replaceChildren(checks);

  $("nodes-count").textContent = String(overview.nodes.length);
  const rows = document.createDocumentFragment();
  for (const node of overview.nodes) {
    const row = element("tr", node.local ? "local" : "");
    row.dataset.node = node.nodeId;
    row.append(element("td", "", node.nodeId), element("td", "conns", number(node.connections)));
    row.append(element("td", "users", number(node.users)));
    rows.append(row);
  }
  $("nodes").replaceChildren(rows);

  $("errors-total").textContent = number(counters.errors);
  $("error-counts").textContent = overview.errors.counts
    .map((e) => `${e.transport} ${e.code}: ${number(e.count)}`)
    .join(" · ");
  const list = document.createDocumentFragment();
  for (const error of overview.errors.recent) {
    const item = element("li");
    const time = element("time", "", new Date(error.at).toLocaleTimeString());
    time.dateTime = error.at;
    item.append(time, element("span", "code", error.code), element("span", "transport", error.transport));
    list.append(item);
  }
  $("errors").replaceChildren(list);
  $("errors-empty").hidden = overview.errors.recent.length > 0;
}

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();
