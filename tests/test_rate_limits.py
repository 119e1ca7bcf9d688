"""The rate limits on a real server: refused the documented way, nothing
stored from a refusal, and nobody else affected."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, send_json
from tidings.web.throttle import RATE_LIMIT_CLOSE, STRIKES


async def test_a_client_flooding_frames_gets_errors_then_4429_and_others_go_on(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "s", "--frame-rate", "5", rate_limits=True
    ).start()  # burst 10
    try:
        flooder = await open_ws(server.ws_url, token=server.token("flooder"))
        quiet = await open_ws(server.ws_url, token=server.token("quiet"))
        sent = 60
        for i in range(sent):
            await send_json(flooder, {"action": "ping", "requestId": i})
        answers = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                answers.append(await recv_json(flooder))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == RATE_LIMIT_CLOSE
        pongs = [a["requestId"] for a in answers if a["type"] == "pong"]
        errors = [a for a in answers if a["type"] == "error"]
        assert pongs[:10] == list(range(10))  # the burst, answered in order
        assert errors and all(e["code"] == "rate_limited" for e in errors)
        assert "retry after" in errors[0]["message"]
        # Each refusal names its request; the close comes once the strikes are used up.
        assert all(isinstance(e["requestId"], int) for e in errors)
        assert len(errors) <= int(STRIKES.burst) + 2 and len(answers) < sent
        await send_json(quiet, {"action": "ping", "requestId": "still-here"})
        assert (await recv_json(quiet))["requestId"] == "still-here"
        await quiet.close()
    finally:
        server.stop()


async def test_sends_past_the_publish_rate_are_refused_and_not_stored(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "s", "--publish-rate", "1", "--user-send", "any", rate_limits=True
    ).start()  # burst 2
    try:
        alice = await open_ws(server.ws_url, token=server.token("alice"))
        for i in range(5):
            await send_json(
                alice,
                {"action": "sendNotification", "userId": "bob", "message": f"m{i}", "requestId": i},
            )
        replies = {
            reply["requestId"]: reply for reply in [await recv_json(alice) for _ in range(5)]
        }
        acked = sorted(i for i, reply in replies.items() if reply["type"] == "ack")
        refused = [reply for reply in replies.values() if reply["type"] == "error"]
        assert len(acked) == 2 and len(refused) == 3
        assert {reply["code"] for reply in refused} == {"rate_limited"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            answer = await http.get(
                "/v1/users/bob/inbox",
                headers={"Authorization": f"Bearer {server.token('bob')}"},
            )
        assert answer.status_code == 200, answer.text
        stored = sorted(item["message"] for item in answer.json()["items"])
        assert stored == [f"m{i}" for i in acked]
        await alice.close()
    finally:
        server.stop()


async def test_http_publishes_past_an_admin_tokens_rate_get_429_with_retry_after(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "s", "--service-publish-rate", "1", rate_limits=True
    ).start()  # burst 2
    try:
        headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            statuses = []
            for i in range(3):
                answer = await http.post(
                    "/v1/notifications", json={"userId": "carol", "message": f"m{i}"}
                )
                statuses.append(answer.status_code)
            assert statuses == [201, 201, 429]
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "rate_limited"
            listed = await http.get("/v1/users/carol/inbox")
            assert [item["message"] for item in listed.json()["items"]] == ["m1", "m0"]
            other = await http.post(
                "/v1/notifications",
                json={"userId": "carol", "message": "x"},
                headers={"Authorization": f"Bearer {server.token('other', admin=True)}"},
            )
            assert other.status_code == 201  # another token has its own allowance
    finally:
        server.stop()


def _from(address: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((address, 0))
    return sock


async def test_handshakes_past_the_rate_of_one_address_get_429_others_connect(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "s", "--connect-rate-per-ip", "1", rate_limits=True
    ).start()  # burst 2
    try:
        url = f"{server.ws_url}?token={server.token('dave')}"
        opened = []
        for _ in range(2):
            sock = _from("127.0.0.1")
            sock.connect(("127.0.0.1", server.port))
            opened.append(await connect(url, sock=sock))
        sock = _from("127.0.0.1")
        sock.connect(("127.0.0.1", server.port))
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, sock=sock)
        response = refused.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert b"too many new connections from this address" in response.body
        elsewhere = _from("127.0.0.2")
        elsewhere.connect(("127.0.0.1", server.port))
        opened.append(await connect(url, sock=elsewhere))
        for ws in opened:
            await ws.close()
    finally:
        server.stop()


async def test_the_newest_connection_past_the_per_user_default_is_refused(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "s", "--connect-rate-per-ip", "0", rate_limits=True).start()
    try:
        url = f"{server.ws_url}?token={server.token('erin')}"
        opened = await asyncio.gather(*(connect(url, ping_interval=None) for _ in range(100)))
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 429
        assert b"too many connections for this user (limit 100)" in refused.value.response.body
        await send_json(opened[0], {"action": "ping", "requestId": 1})
        assert (await recv_json(opened[0]))["type"] == "pong"  # the oldest is kept
        await asyncio.gather(*(ws.close() for ws in opened))
    finally:
        server.stop()
