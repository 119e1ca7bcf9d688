"""A token's ``exp`` while connected, on a real server: the connection is told
before, closed with 4401 at ``exp``, and a ``refreshToken`` frame (sent by
hand, or by the Python client through its token factory) keeps it open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until, send_json
from tidings.client import TidingsClient

NOTICE = 2
"""--token-expiry-notice: seconds before exp that tokenExpiring comes."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, "--token-expiry-notice", str(NOTICE)).start()
    yield proc
    proc.stop()


async def closed_with(ws: object, timeout: float = 10.0) -> tuple[int, str]:
    from websockets.asyncio.client import ClientConnection

    assert isinstance(ws, ClientConnection)
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_the_connection_is_told_then_closed_with_4401_at_exp(server: ServerProcess) -> None:
    token = server.token("alice", ttl=NOTICE + 2)
    expires_at = int(time.time()) + NOTICE + 2
    ws = await open_ws(server.ws_url, token=token, since=0)
    frames = await recv_until(ws, "tokenExpiring", timeout=10)
    notice = frames[-1]
    assert notice["expiresAt"] in (expires_at, expires_at + 1)
    assert 0 <= notice["in"] <= NOTICE + 1
    code, reason = await closed_with(ws)
    assert code == 4401 and "token expired" in reason
    assert time.time() >= notice["expiresAt"]


async def test_a_refreshed_token_keeps_the_connection_past_the_old_exp(
    server: ServerProcess,
) -> None:
    ws = await open_ws(server.ws_url, token=server.token("bob", ttl=NOTICE + 1), since=0)
    frames = await recv_until(ws, "tokenExpiring", timeout=10)
    old_exp = frames[-1]["expiresAt"]
    # Refused refreshes change nothing: another user's token, a bad one.
    await send_json(
        ws, {"action": "refreshToken", "token": server.token("mallory"), "requestId": "x"}
    )
    assert (await recv_json(ws))["code"] == "forbidden"
    await send_json(ws, {"action": "refreshToken", "token": "junk", "requestId": "y"})
    assert (await recv_json(ws))["code"] == "unauthorized"
    await send_json(ws, {"action": "refreshToken", "requestId": "z"})
    assert (await recv_json(ws))["code"] == "bad_request"
    fresh = server.token("bob", ttl=3600)
    await send_json(ws, {"action": "refreshToken", "token": fresh, "requestId": "r"})
    ack = await recv_json(ws)
    assert ack["type"] == "ack" and ack["requestId"] == "r"
    assert ack["expiresAt"] >= int(time.time()) + 3500
    while time.time() < old_exp + 1.5:
        await asyncio.sleep(0.25)
    await send_json(ws, {"action": "ping", "requestId": "p"})
    assert await recv_json(ws) == {"type": "pong", "requestId": "p"}
    await ws.close()
    assert "junk" not in server.log() and fresh not in server.log()


async def test_a_refused_refresh_leaves_the_old_countdown(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, token=server.token("carol", ttl=NOTICE + 1), since=0)
    await recv_until(ws, "tokenExpiring", timeout=10)
    await send_json(ws, {"action": "refreshToken", "token": server.token("dan")})
    code, _ = await closed_with(ws)
    assert code == 4401


async def test_the_python_client_refreshes_through_its_token_factory(
    server: ServerProcess,
) -> None:
    made: list[int] = []

    def factory() -> str:
        made.append(1)
        return server.token("erin", ttl=NOTICE + 2)  # every token is short-lived

    states: list[str] = []
    async with TidingsClient(server.url, token_factory=factory, on_state=states.append) as erin:
        until = time.time() + 2 * (NOTICE + 2) + 1  # past two tokens' exp
        while time.time() < until:
            await asyncio.sleep(0.25)
        ack = await erin.send("erin", "still here")
        assert ack["seq"] == 1
    assert len(made) >= 3  # the first token and at least two refreshes
    assert "reconnecting" not in states, states
