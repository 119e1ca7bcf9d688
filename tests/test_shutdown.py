"""SIGTERM drains: 503 for new handshakes and readiness, then 1012 to clients, exit 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until, send_json


async def test_sigterm_drains_then_closes_with_1012_and_exits_0(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--drain-grace", "1.5", "--user-send", "any").start()
    bob = await open_ws(server.ws_url, token=server.token("bob"))
    alice = await open_ws(server.ws_url, token=server.token("alice"))
    server.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)

    async with httpx.AsyncClient(base_url=server.url) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
    with pytest.raises(InvalidStatus) as info:
        await open_ws(server.ws_url, token=server.token("carol"))
    assert info.value.response.status_code == 503

    # Existing connections still work during the grace period.
    await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "late"})
    assert (await recv_json(alice))["type"] == "ack"
    assert (await recv_json(bob))["message"] == "late"

    for ws in (bob, alice):
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws, timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert await asyncio.to_thread(server.wait, 15) == 0

    again = ServerProcess(tmp_path / "data").start()
    try:
        ws = await open_ws(again.ws_url, token=again.token("bob"), since=0)
        frames = await recv_until(ws, "caughtUp")
        assert [f.get("message") for f in frames] == ["late", None]
        await ws.close()
    finally:
        again.stop()
