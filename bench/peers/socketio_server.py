"""python-socketio 5 peer on uvicorn (ASGI) with uvloop: one room per user.

Socket.IO events: ``sendNotification`` emits ``notification`` to the user's
room and acks; ``broadcast`` (admin) emits to everyone. HTTP
``POST /v1/notifications`` ({"userId"} or {"userIds"}, admin bearer token)
emits to each user's room, as tidings' publish does. Nothing stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
import uvicorn

from bench.peers.common import Frames, identity, parse_args

Scope = dict[str, Any]


def build(secret: str) -> Any:
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        cors_allowed_origins=[],
        logger=False,
        engineio_logger=False,
    )
    frames = Frames()
    users: dict[str, tuple[str, bool]] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
        who = identity(secret, token)
        if who is None:
            raise socketio.exceptions.ConnectionRefusedError("missing or bad token")
        users[sid] = who
        await sio.enter_room(sid, who[0])

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        users.pop(sid, None)

    @sio.on("sendNotification")
    async def send_notification(sid: str, body: dict[str, Any]) -> dict[str, Any]:
        user = body.get("userId")
        frame, notification_id, seq = frames.notification(user, users[sid][0], body)
        await sio.emit("notification", frame, to=user)
        return {"type": "ack", "notificationId": notification_id, "seq": seq}

    @sio.on("broadcast")
    async def broadcast(sid: str, body: dict[str, Any]) -> dict[str, Any]:
        sender, admin = users[sid]
        if not admin:
            return {"type": "error", "code": "forbidden", "message": "admin only"}
        frame, notification_id, seq = frames.notification(None, sender, body)
        await sio.emit("notification", frame)
        return {"type": "ack", "notificationId": notification_id, "seq": seq}

    async def http(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status: int = 404
        answer: dict[str, object] = {"error": "not found"}
        if scope["method"] == "POST" and scope["path"] == "/v1/notifications":
            chunks = []
            more = True
            while more:
                event = await receive()
                chunks.append(event.get("body", b""))
                more = event.get("more_body", False)
            headers = dict(scope["headers"])
            bearer = headers.get(b"authorization", b"").decode()[7:]
            who = identity(secret, bearer)
            if who is None or not who[1]:
                status, answer = 401, {"error": "admin token needed"}
            else:
                body = orjson.loads(b"".join(chunks))
                recipients = body.get("userIds") or [body.get("userId")]
                for user in recipients:
                    frame, _, _ = frames.notification(user, who[0], body)
                    await sio.emit("notification", frame, to=user)
                status, answer = 201, {"recipients": len(recipients)}
        elif scope["path"] == "/healthz":
            status, answer = 200, {"status": "ok"}
        payload = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return socketio.ASGIApp(sio, other_asgi_app=http)


def main() -> None:
    args = parse_args("python-socketio peer on uvicorn")
    uvicorn.run(
        build(args.secret),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
