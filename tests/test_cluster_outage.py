"""Two nodes while their Redis is down: readiness says so, publishing still
stores and acks, each node's own sockets still get what it publishes, and
when Redis is back every connection on every node ends with its whole stream
(the repair after the outage), including live-only connections that had not
received anything before Redis went away. The same when Redis is not there
yet as the nodes start, and when it goes and comes back several times under
cross-node traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests import test_multinode
from tests.ledger import Ledger
from tests.server import ServerProcess, free_port
from tests.test_broker_contract import RedisServer
from tests.test_multinode import (
    Client,
    Nodes,
    Plan,
    Progress,
    admin_headers,
    broadcast,
    check_broadcasts,
    connect_all,
    run_stream,
    wait_complete,
)

# The fixtures this module shares with test_multinode.
nodes = test_multinode.nodes
own_redis = test_multinode.own_redis
schema = test_multinode.schema


async def wait_ready(http: httpx.AsyncClient, node: ServerProcess, status: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        response = await http.get(node.url + "/readyz")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            body: dict[str, Any] = response.json()
            return body
        await asyncio.sleep(0.1)


async def test_redis_down_then_back(nodes: Callable[..., Nodes], own_redis: RedisServer) -> None:
    group = nodes(2, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
    a, b = group.all
    users = [f"u{i}" for i in range(40)]
    quiet = [f"q{i}" for i in range(10)]
    clients = [Client(u, group, group.all[i % 2]) for i, u in enumerate(users)]
    clients += [Client(u, group, group.all[(i + 1) % 2]) for i, u in enumerate(users[:10])]
    clients += [Client(q, group, group.all[i % 2], live_only=True) for i, q in enumerate(quiet)]
    await connect_all(clients)
    await asyncio.sleep(0.2)  # live-only connections must be registered before the pushes
    plan = Plan(expected={u: [] for u in users + quiet})

    async with httpx.AsyncClient(headers=admin_headers()) as http:

        async def publish(node: ServerProcess, message: str, to: list[str]) -> None:
            response = await http.post(
                node.url + "/v1/notifications", json={"userIds": to, "message": message}
            )
            assert response.status_code == 201, response.text
            for user in to:
                plan.expected[user].append(message)

        await publish(a, "before", users)
        await wait_complete(clients, plan, timeout=10)

        own_redis.kill()
        for node in (a, b):
            body = await wait_ready(http, node, 503)
            assert body["status"] == "degraded" and body["store"] == "ok"
            assert "Redis" in body["broker"], body

        # Stored and acked with the broker down: over HTTP via a, over WebSocket via b.
        for i in range(20):
            await publish(a, f"down{i}", users + quiet)
        sender = next(c for c in clients if c.node is b and not c.live_only)
        for i in range(10):
            reply = await sender.send(users[0], f"ws-down{i}")
            assert reply["type"] == "ack" and reply["seq"] > 0
            plan.expected[users[0]].append(f"ws-down{i}")

        # A node's own sockets get what it published even now; the other node's wait.
        on_a = next(c for c in clients if c.node is a and c.user == "u2")
        deadline = time.monotonic() + 5
        while "down18" not in on_a.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "down18" in on_a.messages
        on_b = next(c for c in clients if c.node is b and c.user == "u3")
        assert "down0" not in on_b.messages

        own_redis.start()
        for node in (a, b):
            assert (await wait_ready(http, node, 200))["broker"] == "ok"
        await wait_complete(clients, plan, timeout=20)
        assert all(c.connects == 1 for c in clients)

        # The registry was rebuilt in the new Redis: each node sees the other's connections.
        deadline = time.monotonic() + 10
        while True:
            presence = await http.get(b.url + "/v1/users/u0/presence")
            if presence.json()["connections"] == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert presence.json()["connections"] == 2
    await asyncio.gather(*(c.close() for c in clients))


async def test_redis_down_at_start_then_joined(nodes: Callable[..., Nodes], tmp_path: Path) -> None:
    """Nodes started before their Redis serve their own sockets and store and
    say the broker is down; once Redis answers they join without a restart:
    what each published meanwhile reaches the other's sockets, traffic crosses
    nodes, and each node's registry entries are written."""
    redis = RedisServer(free_port(), tmp_path / "late-redis.log")
    try:
        group = nodes(2, redis_url=f"redis://127.0.0.1:{redis.port}/0")
        a, b = group.all
        users = [f"u{i}" for i in range(20)]
        clients = [Client(u, group, group.all[i % 2]) for i, u in enumerate(users)]
        clients += [Client(u, group, group.all[(i + 1) % 2]) for i, u in enumerate(users[:10])]
        await connect_all(clients)
        plan = Plan(expected={u: [] for u in users})

        async with httpx.AsyncClient(headers=admin_headers()) as http:

            async def publish(node: ServerProcess, message: str) -> None:
                body = {"userIds": users, "message": message}
                response = await http.post(node.url + "/v1/notifications", json=body)
                assert response.status_code == 201, response.text
                for user in users:
                    plan.expected[user].append(message)

            for node in (a, b):
                body = await wait_ready(http, node, 503)
                assert body["store"] == "ok" and "Redis" in body["broker"], body
                assert "Redis broker unreachable at start" in node.log()
            for i in range(5):
                await publish(a, f"early{i}")
            on_a = next(c for c in clients if c.node is a)
            deadline = time.monotonic() + 5
            while len(on_a.messages) < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert on_a.messages == [f"early{i}" for i in range(5)]

            await asyncio.to_thread(redis.start)
            for node in (a, b):
                assert (await wait_ready(http, node, 200))["broker"] == "ok"
                assert "Redis broker link up" in node.log()
            for i in range(5):
                await publish(b if i % 2 else a, f"joined{i}")
            sender = next(c for c in clients if c.node is b)
            for i in range(5):
                reply = await sender.send(users[0], f"ws{i}")
                assert reply["type"] == "ack", reply
                plan.expected[users[0]].append(f"ws{i}")
            await wait_complete(clients, plan, timeout=20)
            assert all(c.connects == 1 for c in clients)

            deadline = time.monotonic() + 10
            while (await http.get(b.url + "/v1/users/u0/presence")).json()["connections"] != 2:
                assert time.monotonic() < deadline, "a's connections never reached the registry"
                await asyncio.sleep(0.1)
        await asyncio.gather(*(c.close() for c in clients))
    finally:
        redis.kill()


async def test_redis_flapping_under_cross_node_traffic(
    nodes: Callable[..., Nodes], own_redis: RedisServer
) -> None:
    """Redis stopped and started three times while both nodes publish to users
    connected to both, and broadcast to everyone: once it settles every
    subscriber has every acked notification of its user and of ``everyone``
    once, in order (live or through the repair)."""
    group = nodes(2, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
    flaps: list[int] = []

    async def flap(progress: Progress) -> None:
        await progress.reached(0.1)
        for _ in range(3):
            await asyncio.to_thread(own_redis.kill)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(own_redis.start)
            await asyncio.sleep(1.0)  # past the link's next retry, so each flap is seen
            flaps.append(progress.done)

    total = 6_000
    ledger = Ledger()

    async def disturb(progress: Progress) -> None:
        # Until the last flap: the personal stream goes on after it, so the
        # last broadcasts have time to arrive.
        await asyncio.gather(flap(progress), broadcast(group, ledger, lambda: len(flaps) == 3))

    clients = await run_stream(group, users=150, total=total, rate=1_200, during=disturb)
    assert len(flaps) == 3 and flaps[-1] < total, flaps
    check_broadcasts(ledger, clients)
    for node in group.all:
        assert node.log().count("Redis broker link restored") >= 2, node.log()[-3000:]
