"""Presence and the ``@connections`` management API across real nodes.

A call reaches the node holding the connection through Redis. 410
GoneException only when the connection is certainly not open; 503 when the
node holding it cannot be asked (Redis down, node not answering), never 410.
A node killed with -9 leaves registry entries that its peers reap once its
heartbeat expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests import test_multinode
from tests.server import SECRET, ServerProcess
from tests.test_broker_contract import RedisServer
from tests.test_multinode import Nodes, admin_headers
from tests.wsclient import open_ws, recv_json
from tidings.core.tokens import mint

# The fixtures this module shares with test_multinode.
nodes = test_multinode.nodes
own_redis = test_multinode.own_redis
schema = test_multinode.schema


def user_headers(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, user, ttl_seconds=600)}"}


async def presence(http: httpx.AsyncClient, node: ServerProcess, user: str) -> dict[str, Any]:
    response = await http.get(f"{node.url}/v1/users/{user}/presence")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def presence_becomes(
    http: httpx.AsyncClient, node: ServerProcess, user: str, connections: int, timeout: float = 8
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await presence(http, node, user)
        if body["connections"] == connections or time.monotonic() > deadline:
            assert body["connections"] == connections, body
            return body
        await asyncio.sleep(0.05)


def assert_gone(response: httpx.Response) -> None:
    assert response.status_code == 410, response.text
    assert response.json()["__type"] == "GoneException"
    assert response.headers["x-amzn-ErrorType"] == "GoneException"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["__type"] == "ServiceUnavailableException"


async def test_presence_and_connections_across_nodes(nodes: Callable[..., Nodes]) -> None:
    a, b = nodes(2).all
    alice_a = await open_ws(a.ws_url, token=a.token("alice"))
    alice_b = await open_ws(b.ws_url, token=b.token("alice"))
    bob = await open_ws(b.ws_url, token=b.token("bob"), since=0)
    assert (await recv_json(bob))["type"] == "caughtUp"
    async with httpx.AsyncClient(headers=admin_headers()) as http:
        for node in (a, b):
            body = await presence_becomes(http, node, "alice", 2)
            assert body["userId"] == "alice" and body["online"] is True
        assert await presence(http, a, "nobody") == {
            "userId": "nobody",
            "online": False,
            "connections": 0,
            "connectionIds": [],
        }
        mine = await http.get(f"{a.url}/v1/users/me/presence", headers=user_headers("alice"))
        assert mine.json()["connections"] == 2
        other = await http.get(f"{a.url}/v1/users/bob/presence", headers=user_headers("alice"))
        assert other.status_code == 403

        [bob_id] = (await presence_becomes(http, a, "bob", 1))["connectionIds"]
        described = await http.get(f"{a.url}/@connections/{bob_id}")
        assert described.status_code == 200, described.text
        info = described.json()
        assert info["connectionId"] == bob_id and info["userId"] == "bob"
        assert info["identity"]["sourceIp"] == "127.0.0.1"
        assert "websockets" in info["identity"]["userAgent"]
        connected = datetime.fromisoformat(info["connectedAt"])
        assert abs((datetime.now(UTC) - connected).total_seconds()) < 60
        assert datetime.fromisoformat(info["lastActiveAt"]) >= connected

        posted = await http.post(f"{a.url}/@connections/{bob_id}", content="plain text, not JSON")
        assert posted.status_code == 200 and posted.content == b""
        assert await asyncio.wait_for(bob.recv(), 5) == "plain text, not JSON"

        too_big = await http.post(f"{a.url}/@connections/{bob_id}", content=b"x" * 200_000)
        assert too_big.status_code == 413
        assert too_big.json()["__type"] == "PayloadTooLargeException"
        binary = await http.post(f"{a.url}/@connections/{bob_id}", content=b"\xff\xfe")
        assert binary.status_code == 400
        as_user = await http.get(f"{a.url}/@connections/{bob_id}", headers=user_headers("bob"))
        assert as_user.status_code == 403

        deleted = await http.delete(f"{a.url}/@connections/{bob_id}")
        assert deleted.status_code == 204
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(bob.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert_gone(await http.get(f"{a.url}/@connections/{bob_id}"))
        assert_gone(await http.post(f"{a.url}/@connections/{bob_id}", content="late"))
        assert_gone(await http.delete(f"{b.url}/@connections/{bob_id}"))
        await presence_becomes(http, a, "bob", 0)

        a_prefix = (await presence(http, a, "alice"))["connectionIds"][0][:8]
        for unknown in ("nope", a_prefix + "x" * 12, "zzzzzzzz" + "x" * 12):
            assert_gone(await http.get(f"{b.url}/@connections/{unknown}"))
    for ws in (alice_a, alice_b):
        await ws.close()


async def test_with_redis_down_calls_to_other_nodes_are_503_never_410(
    nodes: Callable[..., Nodes], own_redis: RedisServer
) -> None:
    a, b = nodes(2, redis_url=f"redis://127.0.0.1:{own_redis.port}/0").all
    alice = await open_ws(a.ws_url, token=a.token("alice"))
    bob = await open_ws(b.ws_url, token=b.token("bob"))
    async with httpx.AsyncClient(headers=admin_headers()) as http:
        [alice_id] = (await presence_becomes(http, b, "alice", 1))["connectionIds"]
        [bob_id] = (await presence_becomes(http, a, "bob", 1))["connectionIds"]

        own_redis.kill()
        deadline = time.monotonic() + 10
        while (await http.get(a.url + "/readyz")).status_code != 503:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert_unavailable(await http.get(f"{a.url}/@connections/{bob_id}"))
        assert_unavailable(await http.post(f"{a.url}/@connections/{bob_id}", content="x"))
        assert_unavailable(await http.delete(f"{a.url}/@connections/{bob_id}"))
        assert_unavailable(await http.get(f"{a.url}/@connections/zzzzzzzz{'x' * 12}"))
        assert (await http.get(f"{a.url}/v1/users/bob/presence")).status_code == 503
        # This node's own connections need no Redis.
        assert (await http.get(f"{a.url}/@connections/{alice_id}")).status_code == 200
        assert (
            await http.post(f"{a.url}/@connections/{alice_id}", content="hi")
        ).status_code == 200
        assert await asyncio.wait_for(alice.recv(), 5) == "hi"
        assert_gone(await http.get(f"{a.url}/@connections/not-an-id"))

        own_redis.start()
        deadline = time.monotonic() + 15
        while (await http.get(f"{a.url}/@connections/{bob_id}")).status_code != 200:
            assert time.monotonic() < deadline, "routing did not come back with Redis"
            await asyncio.sleep(0.1)
        await presence_becomes(http, a, "bob", 1)
    for ws in (alice, bob):
        await ws.close()


async def test_a_killed_node_is_reaped_and_its_connections_are_gone(
    nodes: Callable[..., Nodes], schema: str
) -> None:
    from redis.asyncio import Redis

    group = nodes(2)
    a, b = group.all
    bob = await open_ws(b.ws_url, token=b.token("bob"))
    async with httpx.AsyncClient(headers=admin_headers()) as http:
        [bob_id] = (await presence_becomes(http, a, "bob", 1))["connectionIds"]
        b_id = bob_id[:8]
        b.kill()
        killed = time.monotonic()
        answer = await http.get(f"{a.url}/@connections/{bob_id}")
        if time.monotonic() - killed < 0.5:  # its heartbeat (1.5 s) has not expired yet
            assert_unavailable(answer)
        await presence_becomes(http, a, "bob", 0, timeout=10)
        assert_gone(await http.get(f"{a.url}/@connections/{bob_id}"))

    redis = Redis.from_url(group.broker.split("?")[0])
    try:
        deadline = time.monotonic() + 10
        while await redis.exists(f"{schema}:node:{b_id}:conns"):
            assert time.monotonic() < deadline, "the dead node's entries were not reaped"
            await asyncio.sleep(0.1)
        assert not await redis.sismember(f"{schema}:user:bob", bob_id)
        assert not await redis.sismember(f"{schema}:nodes", b_id)
    finally:
        await redis.aclose()
    await bob.close()
