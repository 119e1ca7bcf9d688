// Node socket.io 4 peer for the tidings benchmark: one room per user.
//
// Socket.IO events: "sendNotification" emits "notification" to the user's room
// and acks; "broadcast" (admin) emits to everyone. HTTP POST /v1/notifications
// ({"userId"} or {"userIds"}, admin bearer token) emits to each user's room.
// Tokens are HS256 JWTs checked with node's crypto. Nothing is stored.
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

function arg(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : fallback;
}

const host = arg("host", "127.0.0.1");
const port = Number(arg("port"));
const secret = arg("secret");

function identity(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const expected = crypto
    .createHmac("sha256", secret)
    .update(`${parts[0]}.${parts[1]}`)
    .digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  let claims;
  try {
    const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
    if (header.alg !== "HS256") return null;
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  } catch {
    return null;
  }
  if (typeof claims.sub !== "string" || !claims.sub) return null;
  if (typeof claims.exp !== "number" || claims.exp + 5 < Date.now() / 1000) return null;
  return { user: claims.sub, admin: claims.admin === true };
}

const seqs = new Map();
let broadcasts = 0;
let ids = 0;

function notification(user, sender, body) {
  let seq;
  if (user === null) {
    seq = ++broadcasts;
  } else {
    seq = (seqs.get(user) || 0) + 1;
    seqs.set(user, seq);
  }
  const now = Date.now();
  const notificationId =
    now.toString(16).padStart(12, "0") + (++ids).toString(16).padStart(14, "0");
  const frame = {
    type: "notification",
    notificationId,
    seq,
    userId: user === null ? "*" : user,
    sender,
    message: body.message || "",
    data: body.data || {},
    createdAt: new Date(now).toISOString(),
  };
  return { frame, notificationId, seq };
}

function answer(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
  });
  res.end(payload);
}

const server = http.createServer();
const io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});

server.on("request", (req, res) => {
  if (req.url.startsWith("/socket.io/")) return; // socket.io answers these
  if (req.method === "POST" && req.url === "/v1/notifications") {
    const who = identity((req.headers.authorization || "").slice(7));
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      if (!who || !who.admin) return answer(res, 401, { error: "admin token needed" });
      const body = JSON.parse(Buffer.concat(chunks).toString());
      const recipients = body.userIds || [body.userId];
      for (const user of recipients) {
        io.to(user).emit("notification", notification(user, who.user, body).frame);
      }
      answer(res, 201, { recipients: recipients.length });
    });
    return;
  }
  if (req.url === "/healthz") return answer(res, 200, { status: "ok" });
  answer(res, 404, { error: "not found" });
});

io.use((socket, next) => {
  const who = identity(socket.handshake.query.token);
  if (!who) return next(new Error("missing or bad token"));
  socket.data.who = who;
  next();
});

io.on("connection", (socket) => {
  const who = socket.data.who;
  socket.join(who.user);
  socket.on("sendNotification", (body, ack) => {
    const made = notification(body.userId, who.user, body);
    io.to(body.userId).emit("notification", made.frame);
    if (typeof ack === "function") {
      ack({ type: "ack", notificationId: made.notificationId, seq: made.seq });
    }
  });
  socket.on("broadcast", (body, ack) => {
    if (!who.admin) {
      if (typeof ack === "function") ack({ type: "error", code: "forbidden" });
      return;
    }
    const made = notification(null, who.user, body);
    io.emit("notification", made.frame);
    if (typeof ack === "function") {
      ack({ type: "ack", notificationId: made.notificationId, seq: made.seq });
    }
  });
});

server.listen({ host, port, backlog: 2048 }, () => {
  process.stdout.write(`node-socketio peer listening on ${host}:${port}\n`);
});
