"""Bare picows peer: a dict of user -> transports, and a loop that sends to each.

Speaks tidings' JSON frames on ``/ws?token=JWT``: ``sendNotification`` pushes to
the user's connections and acks; ``broadcast`` (admin) pushes one frame to
every connection. uvloop, no compression, nothing stored.
"""

from __future__ import annotations

from typing import Any

import orjson
import uvloop
from picows import (
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from bench.peers.common import Frames, error, identity, parse_args, token_from_target

TEXT = WSMsgType.TEXT


class Hub:
    def __init__(self) -> None:
        self.everyone: set[WSTransport] = set()
        self.by_user: dict[str, set[WSTransport]] = {}
        self.frames = Frames()


class Peer(WSListener):
    def __init__(self, hub: Hub, user: str, admin: bool) -> None:
        self.hub = hub
        self.user = user
        self.admin = admin

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.hub.everyone.add(transport)
        self.hub.by_user.setdefault(self.user, set()).add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hub.everyone.discard(transport)
        mine = self.hub.by_user.get(self.user)
        if mine is not None:
            mine.discard(transport)
            if not mine:
                del self.hub.by_user[self.user]

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if frame.msg_type is not TEXT:
            return
        body = orjson.loads(frame.get_payload_as_bytes())
        action = body.get("action")
        hub = self.hub
        if action == "sendNotification":
            user = body.get("userId")
            payload, ack = hub.frames.encoded(user, self.user, body)
            for target in hub.by_user.get(user, ()):
                target.send(TEXT, payload)
            transport.send(TEXT, ack)
        elif action == "broadcast" and self.admin:
            payload, ack = hub.frames.encoded(None, self.user, body)
            for target in hub.everyone:
                target.send(TEXT, payload)
            transport.send(TEXT, ack)
        else:
            transport.send(TEXT, error(body.get("requestId"), f"unknown action {action!r}"))


async def main() -> None:
    args = parse_args("bare picows peer")
    hub = Hub()

    def route(request: WSUpgradeRequest) -> Peer | WSUpgradeResponseWithListener:
        who = identity(args.secret, token_from_target(request.path.decode()))
        if who is None:
            refusal = WSUpgradeResponse.create_error_response(401, b"missing or bad token\n")
            return WSUpgradeResponseWithListener(refusal, None)
        return Peer(hub, *who)

    server = await ws_create_server(
        route,
        args.host,
        args.port,
        enable_auto_ping=True,
        auto_ping_idle_timeout=20,
        auto_ping_reply_timeout=20,
        backlog=2048,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
