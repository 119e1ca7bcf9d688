"""Bare python-websockets peer: ``broadcast()`` to a user's set or to everyone.

Speaks tidings' JSON frames on ``/ws?token=JWT`` (see picows_server.py).
uvloop, ``compression=None``, nothing stored.
"""

from __future__ import annotations

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from bench.peers.common import Frames, error, identity, parse_args, token_from_target


async def main() -> None:
    args = parse_args("bare python-websockets peer")
    everyone: set[ServerConnection] = set()
    by_user: dict[str, set[ServerConnection]] = {}
    who: dict[ServerConnection, tuple[str, bool]] = {}
    frames = Frames()

    def authenticate(connection: ServerConnection, request: Request) -> Response | None:
        found = identity(args.secret, token_from_target(request.path))
        if found is None:
            return connection.respond(401, "missing or bad token\n")
        who[connection] = found
        return None

    async def handler(connection: ServerConnection) -> None:
        user, admin = who[connection]
        everyone.add(connection)
        by_user.setdefault(user, set()).add(connection)
        try:
            async for message in connection:
                body = orjson.loads(message)
                action = body.get("action")
                if action == "sendNotification":
                    payload, ack = frames.encoded(body.get("userId"), user, body)
                    broadcast(by_user.get(body.get("userId"), ()), payload, text=True)
                    await connection.send(ack, text=True)
                elif action == "broadcast" and admin:
                    payload, ack = frames.encoded(None, user, body)
                    broadcast(everyone, payload, text=True)
                    await connection.send(ack, text=True)
                else:
                    await connection.send(
                        error(body.get("requestId"), f"unknown action {action!r}"), text=True
                    )
        finally:
            everyone.discard(connection)
            who.pop(connection, None)
            mine = by_user.get(user)
            if mine is not None:
                mine.discard(connection)
                if not mine:
                    del by_user[user]

    async with serve(
        handler,
        args.host,
        args.port,
        compression=None,
        process_request=authenticate,
        backlog=2048,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
