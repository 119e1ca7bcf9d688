"""A small WebSocket test client on python-websockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect


async def open_ws(url: str, **query: object) -> ClientConnection:
    params = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    return await connect(
        f"{url}?{params}" if params else url, max_size=None, max_queue=None, ping_interval=None
    )


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    value: dict[str, Any] = orjson.loads(raw)
    return value


async def recv_until(ws: ClientConnection, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Frames up to and including the first of type ``kind``."""
    frames = []
    while True:
        frame = await recv_json(ws, timeout)
        frames.append(frame)
        if frame.get("type") == kind:
            return frames


async def send_json(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def assert_silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    """Nothing arrives within ``seconds``."""
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {frame!r}")
