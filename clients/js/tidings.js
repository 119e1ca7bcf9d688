/**
 * tidings client: real-time notifications over one WebSocket, with resume,
 * gap repair and the inbox HTTP API. One ES module with no dependencies: load
 * it with <script type="module"> in a browser, or import it in Node.js 20+
 * (which has no global WebSocket: pass the `ws` package as `WebSocket`).
 *
 *   const client = new TidingsClient({ url: "https://notify.example.com", token: getToken });
 *   client.on("notification", (n) => show(n));
 *   client.on("state", (state) => indicator(state));
 *   client.connect();
 *   await client.send("bob", "hi", { order: 42 });
 *
 * Delivery: each notification once, in seq order per stream. The client keeps
 * the last seq of the user's stream and of each topic (in memory, and in
 * `storage` when given), reconnects with exponential backoff and full jitter,
 * resumes with `since` / `topics`, drops duplicates by notificationId, and
 * fills a live seq jump from the HTTP history before delivering what follows.
 */

const PERSONAL = "";
/** Stream key of the user's own stream; topics are keyed by name. */

const OPEN = 1;
const CLOSE_RESYNC = 4000;
const CLOSE_OFFLINE = 4001;
const CLOSE_DEAD = 4002;
const HISTORY_PAGE = 200;
const SUBPROTOCOL = "tidings.v1";
const BEARER_PREFIX = "bearer.";
/** What a subprotocol may hold (RFC 6455's token characters): JWTs always fit. */
const SUBPROTOCOL_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Whether the token can travel as a `bearer.<token>` subprotocol, out of the
 * URL that proxies and browsers' histories keep; otherwise it goes in `?token=`.
 */
function subprotocolSafe(token) {
  return SUBPROTOCOL_CHARS.test(token);
}

/** An error frame, an HTTP error answer, or a failure of the client itself. */
export class TidingsError extends Error {
  constructor(code, message, { status = undefined, requestId = undefined } = {}) {
    super(message);
    this.name = "TidingsError";
    /** The protocol's code: bad_request, unauthorized, forbidden, not_found, ... */
    this.code = code;
    /** The HTTP status, for errors from the HTTP API or a refused handshake. */
    this.status = status;
    this.requestId = requestId;
  }
}

/** Full-jitter backoff: a random delay in [0, min(maxDelay, minDelay * 2^attempt)). */
export function backoffDelay(attempt, { minDelay = 500, maxDelay = 30000 } = {}, random = Math.random) {
  return Math.floor(random() * Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30)));
}

/** A random id for requestId / idempotencyKey; works in insecure browser contexts too. */
export function randomId() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The HTTP base (http[s]://host[/prefix]) and the WebSocket URL for a server URL. */
export function serverUrls(url) {
  const parsed = new URL(url);
  const secure = parsed.protocol === "https:" || parsed.protocol === "wss:";
  const prefix = parsed.pathname.replace(/\/ws\/?$/, "").replace(/\/+$/, "");
  return {
    http: `${secure ? "https" : "http"}://${parsed.host}${prefix}`,
    ws: `${secure ? "wss" : "ws"}://${parsed.host}${prefix}/ws`,
  };
}

export class TidingsClient {
  /**
   * @param {object} options
   * @param {string} [options.url] server URL, http(s):// or ws(s)://; default: this page's origin
   * @param {string | (() => string | Promise<string>)} options.token a token, or a function
   *   returning a fresh one (called for each connection and after an HTTP 401)
   * @param {number | "latest"} [options.since] where to start when no position is stored:
   *   "latest" (default) delivers only what is new, 0 replays everything still stored
   * @param {string[]} [options.topics] topics to resume (subscribed ones are learned as they arrive)
   * @param {{getItem(k: string): any, setItem(k: string, v: string): any}} [options.storage]
   *   where to keep the last seqs (e.g. localStorage) so a reload resumes
   * @param {string} [options.storageKey] key in `storage`; include the user id
   * @param {typeof WebSocket} [options.WebSocket] constructor; default the global one
   * @param {typeof fetch} [options.fetch] default the global fetch
   */
  constructor(options = {}) {
    const origin = globalThis.location?.origin;
    const urls = serverUrls(options.url ?? origin);
    this._httpBase = urls.http;
    this._wsUrl = urls.ws;
    if (options.token === undefined) throw new TypeError("tidings: the token option is required");
    this._tokenSource = options.token;
    this._cachedToken = typeof options.token === "string" ? options.token : null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this._since = options.since ?? "latest";
    this._storage = options.storage ?? null;
    this._storageKey = options.storageKey ?? "tidings";
    this._delays = { minDelay: options.minDelay ?? 500, maxDelay: options.maxDelay ?? 30000 };
    this._pingInterval = options.pingInterval ?? 25000;
    this._pingTimeout = options.pingTimeout ?? 10000;
    this._dedupeWindow = options.dedupeWindow ?? 2000;

    /** "idle" until connect(), then connecting, connected, reconnecting, offline or closed. */
    this.state = "idle";
    /** The newest notificationId delivered or listed: markAllRead's `upTo`. */
    this.newestId = null;
    this._positions = new Map();
    this._topics = new Set(options.topics ?? []);
    this._skip = new Set();
    this._seen = new Set();
    this._pending = new Map();
    this._listeners = new Map();
    this._queue = [];
    this._processing = false;
    this._ws = null;
    this._resyncWs = null;
    this._replaying = false;
    this._everOpened = false;
    this._attempt = 0;
    this._authFailures = 0;
    this._timer = null;
    this._idleTimer = null;
    this._deadTimer = null;
    this._restored = false;
    this._started = false;
    this._closed = false;
    this._requestCounter = 0;
    this._requestPrefix = randomId().slice(0, 8);
    this._onOnline = () => this._wake();
    this._onOffline = () => this._goOffline("network");
  }

  // -- events ------------------------------------------------------------------

  /**
   * Listen to an event; returns a function that removes the listener.
   * Events: notification (frame), state (state, detail), caughtUp ({seq, complete, topics}),
   * refetch ({reason}): the inbox may have changed beyond what was replayed, reload it;
   * inbox (frame): an inbox change from any device; error (TidingsError).
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /** Like on() for one call; without a listener, a promise of the event's first argument. */
  once(event, listener) {
    if (!listener) return new Promise((resolve) => this.once(event, resolve));
    const off = this.on(event, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) {
      if (event === "error") console.warn("tidings:", args[0]);
      return;
    }
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  _setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state, detail);
  }

  // -- connection --------------------------------------------------------------

  /** Start (or, after `offline` or close(), restart) the connection. Returns the client. */
  connect() {
    if (!this._WebSocket) {
      throw new TidingsError("config", "no WebSocket here: pass the WebSocket option (Node.js: the ws package)");
    }
    this._closed = false;
    this._authFailures = 0;
    if (!this._started) {
      this._started = true;
      globalThis.addEventListener?.("online", this._onOnline);
      globalThis.addEventListener?.("offline", this._onOffline);
    }
    if (!this._ws && !this._timer) this._open();
    return this;
  }

  /** Close for good: rejects pending sends; connect() starts again. */
  close() {
    this._closed = true;
    this._started = false;
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    clearTimeout(this._timer);
    this._timer = null;
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000);
    for (const [, pending] of this._pending) {
      pending.reject(new TidingsError("closed", "the client was closed before an answer"));
    }
    this._pending.clear();
    this._setState("closed");
  }

  /** The last seq delivered per stream: {seq, topics: {name: seq}}. */
  get position() {
    const topics = {};
    for (const [name, seq] of this._positions) if (name !== PERSONAL) topics[name] = seq;
    return { seq: this._positions.get(PERSONAL) ?? null, topics };
  }

  async _open() {
    if (this._closed || this._ws) return;
    if (globalThis.navigator?.onLine === false) {
      this._setState("offline", { reason: "network" });
      return;
    }
    this._setState(this._everOpened || this._attempt > 0 ? "reconnecting" : "connecting");
    let token;
    try {
      await this._restore();
      token = await this._token(this._attempt > 0 || this._everOpened);
    } catch (err) {
      this._emit("error", err);
      this._retry();
      return;
    }
    if (this._closed || this._ws) return;
    let ws;
    try {
      ws = subprotocolSafe(token)
        ? new this._WebSocket(this._socketUrl(null), [SUBPROTOCOL, BEARER_PREFIX + token])
        : new this._WebSocket(this._socketUrl(token));
    } catch (err) {
      this._emit("error", err);
      this._retry();
      return;
    }
    this._ws = ws;
    let opened = false;
    let failure = null;
    ws.onopen = () => {
      opened = true;
      this._onOpen(ws);
    };
    ws.onmessage = (event) => this._onMessage(ws, event.data);
    ws.onerror = (event) => {
      failure = event;
    };
    ws.onclose = (event) => this._onClose(ws, event, opened, failure);
  }

  /** The stream's URL; the token goes in it only when it cannot be a subprotocol. */
  _socketUrl(token) {
    this._skip.clear();
    let since = this._positions.get(PERSONAL);
    if (since === undefined) {
      since = 0;
      this._skip.add(PERSONAL);
    }
    let url = `${this._wsUrl}?since=${since}`;
    if (token !== null) url += `&token=${encodeURIComponent(token)}`;
    const topics = [];
    for (const name of this._topics) {
      let seq = this._positions.get(name);
      if (seq === undefined) {
        seq = 0;
        this._skip.add(name);
      }
      topics.push(`${encodeURIComponent(name)}:${seq}`);
    }
    if (topics.length) url += `&topics=${topics.join(",")}`;
    return url;
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this._everOpened = true;
    this._authFailures = 0;
    this._replaying = true;
    this._setState("connected");
    for (const [, pending] of this._pending) ws.send(pending.text);
    this._touch();
  }

  _onClose(ws, event, opened, failure) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._replaying = false;
    this._stopHeartbeat();
    if (this._closed || this.state === "offline") return;
    if (!opened) {
      this._handshakeFailed(failure);
      return;
    }
    if (event.code === CLOSE_RESYNC) this._attempt = 0;
    this._retry();
  }

  async _handshakeFailed(failure) {
    // Browsers hide a refused handshake's status; the ws package puts it in the message.
    const match = /server response: (\d{3})/.exec(String(failure?.message ?? failure?.error?.message ?? ""));
    let status = match ? Number(match[1]) : 0;
    if (!status && this._cachedToken) status = await this._probeAuth();
    if (this._closed || this._ws) return;
    if (status === 401) {
      this._authFailures += 1;
      this._cachedToken = typeof this._tokenSource === "string" ? this._tokenSource : null;
      if (typeof this._tokenSource !== "function" || this._authFailures > 1) {
        const error = new TidingsError("unauthorized", "the server refused the token", { status });
        this._emit("error", error);
        this._setState("offline", { reason: "unauthorized", error });
        return;
      }
    }
    this._retry();
  }

  /** 401 when the server refuses the token over HTTP, 0 when that cannot be told. */
  async _probeAuth() {
    try {
      const response = await this._fetch(`${this._httpBase}/v1/users/me/counts`, {
        headers: { Authorization: `Bearer ${this._cachedToken}` },
      });
      return response.status === 401 ? 401 : 0;
    } catch {
      return 0;
    }
  }

  _retry() {
    if (this._closed || this._timer || this._ws) return;
    if (globalThis.navigator?.onLine === false) {
      this._setState("offline", { reason: "network" });
      return;
    }
    const delay = backoffDelay(this._attempt, this._delays);
    this._attempt += 1;
    this._setState("reconnecting", { delay, attempt: this._attempt });
    this._timer = setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
  }

  _wake() {
    if (this._closed || !this._started || this._ws) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._attempt = 0;
    this._open();
  }

  _goOffline(reason) {
    if (this._closed) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._setState("offline", { reason });
    const ws = this._ws;
    this._ws = null;
    this._stopHeartbeat();
    if (ws) ws.close(CLOSE_OFFLINE);
  }

  // Browsers cannot see WebSocket pings: an idle connection is checked with the
  // protocol's ping action, and one that does not answer is replaced.
  _touch() {
    clearTimeout(this._idleTimer);
    clearTimeout(this._deadTimer);
    this._deadTimer = null;
    if (!this._pingInterval || !this._ws) return;
    this._idleTimer = setTimeout(() => {
      const ws = this._ws;
      if (!ws || ws.readyState !== OPEN) return;
      ws.send(JSON.stringify({ action: "ping" }));
      this._deadTimer = setTimeout(() => {
        if (ws === this._ws) ws.close(CLOSE_DEAD);
        this._onClose(ws, { code: CLOSE_DEAD }, true, null);
      }, this._pingTimeout);
    }, this._pingInterval);
  }

  _stopHeartbeat() {
    clearTimeout(this._idleTimer);
    clearTimeout(this._deadTimer);
    this._idleTimer = this._deadTimer = null;
  }

  // -- frames in ---------------------------------------------------------------

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    this._touch();
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    const pending = frame.requestId !== undefined ? this._pending.get(frame.requestId) : undefined;
    if (pending && (frame.type === "ack" || frame.type === "error")) {
      this._pending.delete(frame.requestId);
      if (frame.type === "ack") pending.resolve(frame);
      else pending.reject(new TidingsError(frame.code, frame.message, { requestId: frame.requestId }));
      return;
    }
    if (frame.type === "error") {
      this._emit("error", new TidingsError(frame.code, frame.message));
    } else if (frame.type === "tokenExpiring") {
      this._refreshToken(ws);
    } else if (frame.type === "notification" || frame.type === "caughtUp" || frame.type === "inbox") {
      this._queue.push({ ws, frame, replay: this._replaying });
      if (frame.type === "caughtUp") this._replaying = false;
      if (!this._processing) this._processQueue();
    }
  }

  /**
   * The server is about to close the connection (4401) as its token expires:
   * a token function gives a new one, sent over the open connection. A fixed
   * token cannot be renewed; the client reconnects after the close, and is
   * refused.
   */
  async _refreshToken(ws) {
    if (typeof this._tokenSource !== "function") return;
    let token;
    try {
      token = await this._token(true);
    } catch (err) {
      this._emit("error", err);
      return;
    }
    if (ws === this._ws && ws.readyState === OPEN) ws.send(JSON.stringify({ action: "refreshToken", token }));
  }

  // Frames are handled one at a time so that a gap fill, which awaits the
  // history, holds back everything after it.
  async _processQueue() {
    this._processing = true;
    try {
      while (this._queue.length) {
        const item = this._queue.shift();
        if (item.ws === this._resyncWs) continue;
        if (item.frame.type === "notification") await this._onNotification(item);
        else if (item.frame.type === "caughtUp") this._onCaughtUp(item.frame);
        else this._emit("inbox", item.frame);
      }
    } finally {
      this._processing = false;
    }
  }

  async _onNotification({ ws, frame, replay }) {
    const stream = frame.topic ?? PERSONAL;
    if (replay && this._skip.has(stream)) return;
    const last = this._positions.get(stream);
    if (last !== undefined && frame.seq <= last) return;
    if (!replay && last !== undefined && frame.seq > last + 1) {
      if (!(await this._fillGap(ws, stream, last, frame.seq))) return;
    }
    this._deliver(frame, stream);
  }

  _onCaughtUp(frame) {
    const heads = { [PERSONAL]: frame.seq, ...(frame.topics ?? {}) };
    for (const [stream, head] of Object.entries(heads)) {
      if (typeof head !== "number") continue;
      if (stream !== PERSONAL) this._topics.add(stream); // resumed from here next time
      // A head past the last replayed seq means holes at the end; they are not gaps.
      if (!(this._positions.get(stream) >= head)) this._positions.set(stream, head);
    }
    const fresh = !this._skip.has(PERSONAL);
    this._skip.clear();
    this._attempt = 0;
    this._persist();
    this._emit("caughtUp", { seq: frame.seq, complete: frame.complete, topics: frame.topics ?? {} });
    if (frame.complete === false && fresh) this._emit("refetch", { reason: "incomplete" });
  }

  async _fillGap(ws, stream, last, seq) {
    try {
      let after = last;
      for (;;) {
        const page = await this.history({
          afterSeq: after,
          beforeSeq: seq,
          limit: HISTORY_PAGE,
          topic: stream || undefined,
        });
        for (const item of page.items) {
          if (item.seq > (this._positions.get(stream) ?? -1)) {
            this._deliver({ type: "notification", ...item }, stream);
          }
        }
        if (page.items.length < HISTORY_PAGE) return true;
        after = page.items[page.items.length - 1].seq;
      }
    } catch (err) {
      // The protocol's own remedy: reconnect with since; the replay fills the gap.
      this._emit("error", err);
      this._resyncWs = ws;
      if (ws === this._ws) ws.close(CLOSE_RESYNC);
      return false;
    }
  }

  _deliver(frame, stream) {
    this._positions.set(stream, frame.seq);
    if (!this._topics.has(stream) && stream !== PERSONAL) this._topics.add(stream);
    this._persist();
    const id = frame.notificationId;
    if (this._seen.has(id)) return;
    this._seen.add(id);
    if (this._seen.size > this._dedupeWindow) this._seen.delete(this._seen.values().next().value);
    if (this.newestId === null || id > this.newestId) this.newestId = id;
    this._emit("notification", frame);
  }

  // -- storage -----------------------------------------------------------------

  async _restore() {
    if (this._restored) return;
    this._restored = true;
    let saved = null;
    try {
      const raw = this._storage ? await this._storage.getItem(this._storageKey) : null;
      saved = raw ? JSON.parse(raw) : null;
    } catch (err) {
      this._emit("error", err);
    }
    if (saved && Number.isInteger(saved.seq) && !this._positions.has(PERSONAL)) {
      this._positions.set(PERSONAL, saved.seq);
    }
    for (const [name, seq] of Object.entries(saved?.topics ?? {})) {
      this._topics.add(name);
      if (Number.isInteger(seq) && !this._positions.has(name)) this._positions.set(name, seq);
    }
    if (!this._positions.has(PERSONAL) && typeof this._since === "number") {
      this._positions.set(PERSONAL, this._since);
    }
  }

  _persist() {
    if (!this._storage) return;
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(this.position));
    } catch (err) {
      this._emit("error", err);
    }
  }

  // -- frames out --------------------------------------------------------------

  /**
   * Send a notification to `userId` as this client's user. Resolves with the
   * ack ({notificationId, seq}) or rejects with a TidingsError. Sends made
   * while disconnected wait for the connection; a send whose answer was lost
   * is sent again on reconnect with the same idempotencyKey, so it is stored once.
   */
  send(userId, message, data = undefined, { idempotencyKey = randomId() } = {}) {
    const frame = { action: "sendNotification", userId, message, idempotencyKey };
    if (data !== undefined && data !== null) frame.data = data;
    return this._request(frame);
  }

  /** Subscribe this user to a topic; its notifications then arrive and resume too. */
  async subscribe(topic) {
    const ack = await this._request({ action: "subscribe", topic });
    this._topics.add(topic);
    if (!this._positions.has(topic) && Number.isInteger(ack.seq)) this._positions.set(topic, ack.seq);
    this._persist();
    return ack;
  }

  async unsubscribe(topic) {
    const ack = await this._request({ action: "unsubscribe", topic });
    this._topics.delete(topic);
    this._positions.delete(topic);
    this._persist();
    return ack;
  }

  _request(frame) {
    if (this._closed) return Promise.reject(new TidingsError("closed", "the client is closed"));
    const requestId = `${this._requestPrefix}-${++this._requestCounter}`;
    const text = JSON.stringify({ ...frame, requestId });
    return new Promise((resolve, reject) => {
      this._pending.set(requestId, { text, resolve, reject });
      if (this._ws?.readyState === OPEN) this._ws.send(text);
    });
  }

  // -- inbox over HTTP ---------------------------------------------------------

  async _token(fresh) {
    if (typeof this._tokenSource === "string") return this._tokenSource;
    if (fresh || !this._cachedToken) this._cachedToken = await this._tokenSource();
    return this._cachedToken;
  }

  /** One HTTP API call as this client's user; throws TidingsError on an error answer. */
  async request(method, path, { query = undefined, body = undefined } = {}) {
    const url = new URL(this._httpBase + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined || value === null) continue;
      url.searchParams.set(key, Array.isArray(value) ? value.join(",") : String(value));
    }
    for (let attempt = 0; ; attempt++) {
      const headers = { Authorization: `Bearer ${await this._token(attempt > 0)}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await this._fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (response.status === 401 && attempt === 0 && typeof this._tokenSource === "function") continue;
      const text = await response.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      if (!response.ok) {
        const error = json?.error ?? {};
        throw new TidingsError(error.code ?? "http_error", error.message ?? `HTTP ${response.status}`, {
          status: response.status,
        });
      }
      return json;
    }
  }

  /** A page of the inbox, newest first: {items, next, counts}. Pass `after: page.next` for more. */
  async list(params = {}) {
    const page = await this.request("GET", "/v1/users/me/inbox", { query: params });
    for (const item of page?.items ?? []) {
      if (this.newestId === null || item.notificationId > this.newestId) this.newestId = item.notificationId;
    }
    return page;
  }

  /** {total, unread, unseen} */
  counts() {
    return this.request("GET", "/v1/users/me/counts");
  }

  /** One stream by seq range, oldest first: {items, head}. */
  history({ afterSeq, beforeSeq, limit, topic } = {}) {
    return this.request("GET", "/v1/users/me/history", { query: { afterSeq, beforeSeq, limit, topic } });
  }

  /** Mark these notifications read: {changed, counts}. */
  markRead(ids) {
    return this.mark("read", { ids });
  }

  /** Mark these notifications unread again: {changed, counts}. */
  markUnread(ids) {
    return this.mark("unread", { ids });
  }

  /** Archive these notifications (out of the inbox and its counts): {changed, counts}. */
  archive(ids) {
    return this.mark("archive", { ids });
  }

  /** Delete one notification from this user's inbox (a topic item: for this user only). */
  async delete(notificationId) {
    await this.request("DELETE", `/v1/users/me/notifications/${encodeURIComponent(notificationId)}`);
  }

  /**
   * Mark read everything up to the newest notification this client has seen;
   * one that arrives meanwhile stays unread.
   */
  async markAllRead() {
    if (this.newestId === null) return { changed: 0, counts: null };
    return this.mark("read", { upTo: this.newestId });
  }

  /** action: read, unread, seen, archive or unarchive; with {ids} or {upTo}. */
  mark(action, target) {
    return this.request("POST", `/v1/users/me/notifications/${action}`, { body: target });
  }
}

export default TidingsClient;
