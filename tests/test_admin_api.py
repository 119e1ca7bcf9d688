"""``GET /v1/admin/overview`` against real servers with real connections: one
node on its own, and two nodes sharing Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import test_multinode
from tests.server import ServerProcess
from tests.test_multinode import Nodes, admin_headers
from tests.wsclient import open_ws, recv_json
from tidings.web.counters import RECENT_ERRORS, ErrorCounts

nodes = test_multinode.nodes
schema = test_multinode.schema

OVERVIEW = "/v1/admin/overview"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own, so every counter starts at 0."""
    server = ServerProcess(tmp_path / "data").start()
    yield server
    server.stop()


async def overview(http: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    response = await http.get(server.url + OVERVIEW, headers=admin_headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def overview_until(
    http: httpx.AsyncClient,
    server: ServerProcess,
    ok: Callable[[dict[str, Any]], bool],
    timeout: float = 10,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await overview(http, server)
        if ok(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_refused_without_an_admin_token_with_the_error_body(
    fresh: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=fresh.url) as http:
        missing = await http.get(OVERVIEW)
        user = await http.get(OVERVIEW, headers={"Authorization": f"Bearer {fresh.token('eve')}"})
        bad = await http.get(OVERVIEW, headers={"Authorization": "Bearer not-a-token"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert user.status_code == 403
    assert user.json() == {"error": {"code": "forbidden", "message": "this needs an admin token"}}
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


async def test_figures_match_the_connections_publishes_and_errors_made(
    fresh: ServerProcess,
) -> None:
    alice = [await open_ws(fresh.ws_url, token=fresh.token("alice")) for _ in range(2)]
    bob = await open_ws(fresh.ws_url, token=fresh.token("bob"))
    async with httpx.AsyncClient(base_url=fresh.url) as http:
        before = await overview_until(http, fresh, lambda b: b["connections"]["total"] == 3)
        assert before["health"] == {
            "status": "ready",
            "store": "ok",
            "broker": "ok",
            "cluster": "ok",
        }
        assert before["nodes"] == [
            {"nodeId": before["nodeId"], "local": True, "connections": 3, "users": 2}
        ]
        assert before["connections"]["byTransport"] == {"websocket": 3}
        assert before["usersOnline"] == 2
        assert before["counters"] == {
            "publishes": 0,
            "deliveries": 0,
            "handshakes": 3,
            "errors": 0,
        }
        assert before["errors"] == {"counts": [], "recent": []}

        for body in ({"userId": "alice", "message": "one"}, {"userIds": ["alice", "bob"]}):
            answer = await http.post(
                "/v1/notifications", json={"message": "m", **body}, headers=admin_headers()
            )
            assert answer.status_code == 201, answer.text
        for ws in (*alice, *alice, bob):
            assert (await recv_json(ws))["type"] == "notification"
        assert (await http.get("/v1/users/me/counts")).status_code == 401
        assert (await http.get("/nowhere")).status_code == 404

        after = await overview(http, fresh)
        assert after["nodeId"] == before["nodeId"]
        assert after["counters"] == {
            "publishes": 2,
            "deliveries": 5,  # 2 to alice's two sockets, then 3 (alice twice, bob)
            "handshakes": 3,
            "errors": 2,
        }
        assert after["errors"]["counts"] == [
            {"transport": "http", "code": "not_found", "count": 1},
            {"transport": "http", "code": "unauthorized", "count": 1},
        ]
        recent = after["errors"]["recent"]
        assert [(e["transport"], e["code"]) for e in recent] == [
            ("http", "not_found"),
            ("http", "unauthorized"),
        ]
        assert recent[0]["at"] >= recent[1]["at"] >= before["time"]

        await alice[0].close()
        gone = await overview_until(http, fresh, lambda b: b["connections"]["total"] == 2)
        assert gone["usersOnline"] == 2 and gone["nodes"][0]["users"] == 2
        await bob.close()
        gone = await overview_until(http, fresh, lambda b: b["usersOnline"] == 1)
        assert gone["connections"] == {"total": 1, "byTransport": {"websocket": 1}}
    await alice[1].close()


async def test_two_nodes_on_redis_are_both_listed_with_their_connections(
    nodes: Callable[..., Nodes],
) -> None:
    a, b = nodes(2).all
    held = [
        await open_ws(a.ws_url, token=a.token("alice")),
        await open_ws(b.ws_url, token=b.token("bob")),
        await open_ws(b.ws_url, token=b.token("carol")),
        await open_ws(b.ws_url, token=b.token("alice")),  # alice on both: one user online
    ]
    async with httpx.AsyncClient() as http:
        seen = {}
        for here in (a, b):
            body = await overview_until(
                http, here, lambda b: b["connections"]["total"] == 4 and len(b["nodes"]) == 2
            )
            assert body["nodes"][0]["local"] is True and body["nodes"][1]["local"] is False
            seen[here.port] = body
            assert body["usersOnline"] == 3
        a_id, b_id = seen[a.port]["nodeId"], seen[b.port]["nodeId"]
        assert a_id != b_id
        assert seen[a.port]["nodes"] == [
            {"nodeId": a_id, "local": True, "connections": 1, "users": 1},
            {"nodeId": b_id, "local": False, "connections": 3, "users": 3},
        ]
        assert seen[b.port]["nodes"][0] == {
            "nodeId": b_id,
            "local": True,
            "connections": 3,
            "users": 3,
        }
        assert seen[a.port]["connections"]["byTransport"] == {"websocket": 1}
        assert seen[a.port]["health"]["cluster"] == "ok"
        # A node that stops is no longer listed by the other.
        for ws in held:
            await ws.close()
        b.stop()
        alone = await overview_until(http, a, lambda body: len(body["nodes"]) == 1)
        assert alone["nodes"] == [{"nodeId": a_id, "local": True, "connections": 0, "users": 0}]


def test_the_recent_errors_are_bounded_and_counted_with_the_rest() -> None:
    errors = ErrorCounts()
    for _ in range(RECENT_ERRORS + 5):
        errors["http", "bad_request"] += 1
    errors["websocket", "forbidden"] += 1
    assert dict(errors) == {
        ("http", "bad_request"): RECENT_ERRORS + 5,
        ("websocket", "forbidden"): 1,
    }
    assert len(errors.recent) == RECENT_ERRORS
    assert errors.recent[-1].code == "forbidden" and errors.recent[0].code == "bad_request"
