"""API Gateway routes against a real server, real sockets and a real HTTP backend.

$connect decides the handshake, messages reach their routes (two-way routes
answer the client), $disconnect hears of every closed connection with its
close code, and a dead or slow backend costs the client one error frame,
never its connection or the server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aws.backend import Backend, running_backend
from tests.server import ServerProcess, free_port
from tests.wsclient import open_ws, recv_json, send_json


@pytest.fixture
def backend() -> Iterator[Backend]:
    with running_backend() as running:
        yield running


def start(tmp_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / "data", "--allow-user-id", "--stage", "production", *args
    ).start()


def admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('backend', admin=True)}"}


async def connection_ids(server: ServerProcess, user: str) -> list[str]:
    async with httpx.AsyncClient(headers=admin(server)) as http:
        response = await http.get(f"{server.url}/v1/users/{user}/presence")
        ids: list[str] = response.json()["connectionIds"]
        return ids


async def test_connect_route_decides_the_handshake_and_never_sees_the_token(
    tmp_path: Path, backend: Backend
) -> None:
    def connect(event: dict[str, Any]) -> tuple[int, object]:
        if event["requestContext"]["authorizer"]["principalId"] == "mallory":
            return 200, {"statusCode": 403, "body": "go away"}
        return 200, {"statusCode": 200, "body": "Connected"}

    backend.answers["$connect"] = connect
    server = start(tmp_path, "--route", f"$connect={backend.url}")
    base = f"ws://127.0.0.1:{server.port}"
    try:
        # The seed's URL shape: wss://host/{stage}, with ?userId=.
        bob = await open_ws(f"{base}/production", userId="bob", lang="en")
        token = server.token("carol")
        carol = await open_ws(f"{base}/production/ws", token=token, lang="fr")
        dave = await open_ws(server.ws_url, userId="dave")
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(f"{base}/production", userId="mallory")
        assert refused.value.response.status_code == 403
        assert b"go away" in refused.value.response.body
        with pytest.raises(InvalidStatus) as elsewhere:
            await open_ws(f"{base}/staging", userId="bob")
        assert elsewhere.value.response.status_code == 404

        events = await backend.wait_for("$connect", 4)
        assert token not in json.dumps(backend.events)
        by_user = {e["requestContext"]["authorizer"]["principalId"]: e for e in events}
        assert by_user["bob"]["queryStringParameters"] == {"userId": "bob", "lang": "en"}
        assert by_user["carol"]["queryStringParameters"] == {"lang": "fr"}
        assert "Authorization" not in by_user["carol"]["headers"]
        context = by_user["bob"]["requestContext"]
        assert context["eventType"] == "CONNECT" and context["stage"] == "production"
        assert context["domainName"] == f"127.0.0.1:{server.port}"
        assert context["identity"]["sourceIp"] == "127.0.0.1"
        assert abs(context["connectedAt"] - time.time() * 1000) < 60_000

        # http://{domainName}/{stage} is the management endpoint, as on API Gateway.
        endpoint = f"http://{context['domainName']}/{context['stage']}"
        async with httpx.AsyncClient(headers=admin(server)) as http:
            info = await http.get(f"{endpoint}/@connections/{context['connectionId']}")
            assert info.status_code == 200 and info.json()["userId"] == "bob"
            posted = await http.post(
                f"{endpoint}/@connections/{context['connectionId']}", content="x"
            )
            assert posted.status_code == 200
        assert await asyncio.wait_for(bob.recv(), 5) == "x"
        for ws in (bob, carol, dave):
            await ws.close()
    finally:
        server.stop()


async def test_message_routes_two_way_default_and_builtins(
    tmp_path: Path, backend: Backend
) -> None:
    backend.answers["echo"] = lambda event: (
        200,
        {"statusCode": 200, "body": "echo:" + event["body"]},
    )
    backend.answers["$default"] = lambda event: (200, {"statusCode": 200, "body": "unseen"})
    server = start(
        tmp_path,
        "--route",
        f"echo={backend.url}",
        "--two-way",
        "echo",
        "--route",
        f"$default={backend.url}",
    )
    try:
        alice = await open_ws(server.ws_url, userId="alice")
        bob = await open_ws(server.ws_url, userId="bob")
        await send_json(alice, {"action": "echo", "n": 1})
        assert await asyncio.wait_for(alice.recv(), 5) == 'echo:{"action":"echo","n":1}'

        # Built-in actions stay reachable while $default is set.
        await send_json(alice, {"action": "ping", "requestId": "p"})
        assert await recv_json(alice) == {"type": "pong", "requestId": "p"}
        await send_json(
            alice, {"action": "sendNotification", "userId": "bob", "message": "hi", "requestId": 1}
        )
        assert (await recv_json(alice))["type"] == "ack"
        assert (await recv_json(bob))["message"] == "hi"

        # Everything else goes to $default (one-way: its answer is not sent back).
        await send_json(alice, {"action": "createMessage", "text": "t"})
        await alice.send("plain text")
        events = await backend.wait_for("$default", 2)
        # Integration calls run concurrently: like API Gateway's, in no promised order.
        bodies = {e["body"] for e in events}
        assert bodies == {'{"action":"createMessage","text":"t"}', "plain text"}
        context = events[0]["requestContext"]
        assert context["eventType"] == "MESSAGE" and context["messageId"]
        assert context["authorizer"]["principalId"] == "alice"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(alice.recv(), 0.3)
        await alice.close()
        await bob.close()
    finally:
        server.stop()


async def test_dead_backend_costs_one_error_frame_not_the_connection(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/gone"
    server = start(tmp_path, "--route", f"work={dead}", "--two-way", "work")
    try:
        ws = await open_ws(server.ws_url, userId="bob")
        [conn_id] = await connection_ids(server, "bob")
        await send_json(ws, {"action": "work"})
        reply = await recv_json(ws)
        assert reply["message"] == "Internal server error"
        assert reply["connectionId"] == conn_id and reply["requestId"]
        # No $default: an unknown action is tidings' invalid_route, as before.
        await send_json(ws, {"action": "nope"})
        assert (await recv_json(ws))["code"] == "invalid_route"
        await send_json(ws, {"action": "ping"})
        assert (await recv_json(ws))["type"] == "pong"
        assert httpx.get(server.url + "/healthz").status_code == 200
        await ws.close()
        logged = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        failures = [e for e in logged if e["event"] == "integration failed"]
        assert failures and failures[0]["conn"] == conn_id
        assert failures[0]["requestId"] == reply["requestId"]
    finally:
        server.stop()

    # A dead $connect integration refuses the handshake with a 500, and only that.
    server = start(tmp_path, "--route", f"$connect={dead}")
    try:
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(server.ws_url, userId="bob")
        assert refused.value.response.status_code == 500
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()


async def test_slow_backend_hits_the_configured_timeout(tmp_path: Path, backend: Backend) -> None:
    def slow(event: dict[str, Any]) -> tuple[int, object]:
        time.sleep(3)
        return 200, {"statusCode": 200, "body": "too late"}

    backend.answers["slow"] = slow
    server = start(
        tmp_path,
        "--route",
        f"slow={backend.url}",
        "--two-way",
        "slow",
        "--integration-timeout",
        "0.5",
    )
    try:
        ws = await open_ws(server.ws_url, userId="bob")
        started = time.monotonic()
        await send_json(ws, {"action": "slow"})
        reply = await recv_json(ws, timeout=5)
        elapsed = time.monotonic() - started
        assert reply["message"] == "Endpoint request timed out"
        assert 0.4 < elapsed < 2.5, elapsed
        await send_json(ws, {"action": "ping"})
        assert (await recv_json(ws))["type"] == "pong"
        # The late answer is dropped, never delivered.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 3)
        await ws.close()
    finally:
        server.stop()


async def test_disconnect_hears_every_close_with_its_code(tmp_path: Path, backend: Backend) -> None:
    server = start(tmp_path, "--route", f"$disconnect={backend.url}", "--drain-grace", "0.2")
    try:
        polite = await open_ws(server.ws_url, userId="polite")
        deleted = await open_ws(server.ws_url, userId="deleted")
        dropped = await open_ws(server.ws_url, userId="dropped")
        drained = await open_ws(server.ws_url, userId="drained")

        await polite.close(code=4000, reason="bye")
        [deleted_id] = await connection_ids(server, "deleted")
        async with httpx.AsyncClient(headers=admin(server)) as http:
            assert (await http.delete(f"{server.url}/@connections/{deleted_id}")).status_code == 204
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(deleted.recv(), 5)
        dropped.transport.abort()
        await backend.wait_for("$disconnect", 3)

        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        events = await backend.wait_for("$disconnect", 4, timeout=1)
    finally:
        server.stop()
    by_user = {
        e["requestContext"]["authorizer"]["principalId"]: e["requestContext"] for e in events
    }
    assert (by_user["polite"]["disconnectStatusCode"], by_user["polite"]["disconnectReason"]) == (
        4000,
        "bye",
    )
    assert by_user["deleted"]["disconnectStatusCode"] == 1000
    assert by_user["deleted"]["connectionId"] == deleted_id
    assert by_user["dropped"]["disconnectStatusCode"] == 1006
    assert by_user["drained"]["disconnectStatusCode"] == 1012
    assert all(c["eventType"] == "DISCONNECT" for c in by_user.values())
    await drained.wait_closed()


async def test_failing_disconnect_is_retried_until_it_lands(
    tmp_path: Path, backend: Backend
) -> None:
    calls = 0

    def flaky(event: dict[str, Any]) -> tuple[int, object]:
        nonlocal calls
        calls += 1
        return (503, b"busy") if calls < 3 else (200, {"statusCode": 200})

    backend.answers["$disconnect"] = flaky
    server = start(tmp_path, "--route", f"$disconnect={backend.url}")
    try:
        ws = await open_ws(server.ws_url, userId="bob")
        await ws.close()
        events = await backend.wait_for("$disconnect", 3)
        assert len({e["requestContext"]["requestId"] for e in events}) == 1
        await asyncio.sleep(0.3)
        assert calls == 3
    finally:
        server.stop()


async def test_connect_route_answers_the_subprotocol_and_never_sees_a_bearer_one(
    tmp_path: Path, backend: Backend
) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    def choose(event: dict[str, Any]) -> tuple[int, object]:
        offered = event["headers"].get("sec-websocket-protocol", "")
        if "chat.v2" in offered:
            return 200, {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat.v2"}}
        return 200, {"statusCode": 200}

    backend.answers["$connect"] = choose
    server = start(tmp_path, "--route", f"$connect={backend.url}")
    try:
        protocols = [Subprotocol("chat.v1"), Subprotocol("chat.v2")]
        async with connect(f"{server.ws_url}?userId=bob", subprotocols=protocols) as ws:
            assert ws.subprotocol == "chat.v2"  # the integration's choice, as on API Gateway
        token = server.token("carol")
        offered = [Subprotocol("tidings.v1"), Subprotocol(f"bearer.{token}")]
        async with connect(server.ws_url, subprotocols=offered) as ws:
            assert ws.subprotocol == "tidings.v1"  # no choice in the answer: tidings' own
        events = await backend.wait_for("$connect", 2)
        assert token not in json.dumps(backend.events)
        carol = next(
            e for e in events if e["requestContext"]["authorizer"]["principalId"] == "carol"
        )
        assert carol["headers"]["sec-websocket-protocol"] == "tidings.v1"
    finally:
        server.stop()
