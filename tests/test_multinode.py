"""Several real nodes on PostgreSQL and Redis: every connection gets exactly its
user's notifications, once, in seq order, through a broker restart, a node
killed with -9, and a drain.

Clients here behave as the protocol asks: they connect with ``since``, check
that each notification is the previous seq + 1, and after a close reconnect
(to another node) with ``since`` = the last seq they got. Publishers retry
with the same idempotency key when a node goes away under them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.ledger import Ledger
from tests.server import SECRET, ServerProcess, free_port
from tests.services import require_postgres, require_redis
from tests.test_broker_contract import RedisServer
from tests.wsclient import open_ws
from tidings.core.tokens import mint

pytestmark = pytest.mark.slow

# -- services and nodes ---------------------------------------------------------


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def pg_fetch(sql: str, *args: Any) -> list[Any]:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    conn = await asyncpg.connect(require_postgres())
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema name, dropped afterwards."""
    require_postgres()
    name = f"tidings_mn_{uuid.uuid4().hex[:12]}"
    yield name
    await pg_fetch(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of our own, to stop and restart."""
    require_redis()
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.kill()


class Nodes:
    """N ``tidings serve`` processes sharing one schema and one Redis prefix."""

    def __init__(self, tmp_path: Path, schema: str, redis_url: str, *args: str) -> None:
        self.tmp_path = tmp_path
        self.db = with_query(require_postgres(), f"schema={schema}")
        self.broker = with_query(redis_url, f"prefix={schema}")
        self.args = args
        self.all: list[ServerProcess] = []
        self.live: list[ServerProcess] = []
        """Nodes that clients and publishers may use (not killed, not draining)."""

    def start(self, count: int) -> list[ServerProcess]:
        procs = [
            ServerProcess(
                self.tmp_path / f"node{len(self.all) + i}",
                "--db", self.db, "--broker", self.broker, "--node-ttl", "1.5",
                "--user-send", "any", *self.args,
            )
            for i in range(count)
        ]  # fmt: skip
        self.all += procs  # stopped at teardown even if one fails to start
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda proc: proc.start(), procs))
        self.live += procs
        return procs

    def retire(self, node: ServerProcess) -> None:
        """Stop routing new work to ``node``."""
        if node in self.live:
            self.live.remove(node)

    def stop(self) -> None:
        for node in self.all:
            node.stop()


@pytest.fixture
def nodes(tmp_path: Path, schema: str) -> Iterator[Callable[..., Nodes]]:
    made: list[Nodes] = []

    def make(count: int, *args: str, redis_url: str | None = None) -> Nodes:
        group = Nodes(tmp_path, schema, redis_url or require_redis(), *args)
        made.append(group)
        group.start(count)
        return group

    yield make
    for group in made:
        group.stop()


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, 'backend', ttl_seconds=3600, admin=True)}"}


# -- clients ------------------------------------------------------------------


class Pool(Protocol):
    live: list[ServerProcess]
    """The nodes a client may reconnect to."""


class OneNode:
    """A single server as the pool: clients reconnect to it."""

    def __init__(self, server: ServerProcess) -> None:
        self.live = [server]


class Client:
    """One connection of one user, following the protocol's rules."""

    def __init__(
        self, user: str, nodes: Pool, first: ServerProcess, *, live_only: bool = False
    ) -> None:
        self.user = user
        self.live_only = live_only
        """Connect first without ``since`` (live pushes only), as the seed's client does."""
        self.nodes = nodes
        self.node = first
        self.token = mint(SECRET, user, ttl_seconds=3600)
        self.seqs: list[int] = []
        self.messages: list[str] = []
        self.frames: list[tuple[int, str]] = []
        """``(seq, message)`` of every personal notification frame, duplicates included."""
        self.broadcasts: list[tuple[int, str]] = []
        """The same for the ``everyone`` topic, replayed from its start."""
        self.errors: list[str] = []
        self.closes: list[int] = []
        self.connects = 0
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    async def connect(self, node: ServerProcess) -> None:
        since = None if self.live_only and not self.connects else self.last
        everyone = max((seq for seq, _ in self.broadcasts), default=0)
        topics = None if since is None else f"everyone:{everyone}"
        self.ws = await open_ws(node.ws_url, token=self.token, since=since, topics=topics)
        self.node = node
        self.connects += 1
        self.connected.set()
        for frame, _ in list(self.pending.values()):
            await self.ws.send(frame)

    async def start(self) -> None:
        await self.connect(self.node)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.stopping:
            assert self.ws is not None
            try:
                async for raw in self.ws:
                    self._on_frame(orjson.loads(raw))
                code = self.ws.close_code or 1000
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
            if self.stopping:
                return
            self.connected.clear()
            self.closes.append(code)
            await self._reconnect()

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        for attempt in range(1000):
            if loop.time() > deadline:
                break
            live = self.nodes.live
            others = [n for n in live if n is not self.node] or live
            try:
                await self.connect(others[(hash(self.user) + attempt) % len(others)])
                return
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
                await asyncio.sleep(0.05)
        self.errors.append("could not reconnect within 30 s")
        self.stopping = True

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "notification" and frame.get("topic") == "everyone":
            self.broadcasts.append((frame["seq"], frame["message"]))
        elif kind == "notification":
            seq = frame["seq"]
            self.frames.append((seq, frame["message"]))
            if seq != self.last + 1:
                what = "duplicate" if seq <= self.last else "gap"
                self.errors.append(f"{what}: seq {seq} after {self.last}")
                if seq <= self.last:
                    return
            self.seqs.append(seq)
            self.messages.append(frame["message"])
        elif kind in ("ack", "error"):
            entry = self.pending.pop(str(frame.get("requestId")), None)
            if entry is not None and not entry[1].done():
                entry[1].set_result(frame)
        elif kind == "caughtUp" and frame["seq"] < self.last:
            self.errors.append(f"caughtUp at {frame['seq']} after seq {self.last}")

    async def send(self, to: str, message: str) -> dict[str, Any]:
        """sendNotification with ``message`` as request id and idempotency key;
        resent after a reconnect until acked."""
        frame = orjson.dumps(
            {
                "action": "sendNotification",
                "userId": to,
                "message": message,
                "requestId": message,
                "idempotencyKey": message,
            }
        ).decode()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[message] = (frame, future)
        await asyncio.wait_for(self.connected.wait(), 30)
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):  # if so, connect() resends it
            await self.ws.send(frame)
        return await asyncio.wait_for(future, 30)

    async def close(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def connect_all(clients: list[Client], concurrency: int = 40) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(client: Client) -> None:
        async with gate:
            await client.start()

    await asyncio.gather(*(one(c) for c in clients))


# -- the workload ---------------------------------------------------------------


@dataclass
class Plan:
    """Who publishes what to whom, decided up front, so the outcome can be checked."""

    http: list[tuple[str, list[str]]] = field(default_factory=list)
    """(message, recipients) for ``POST /v1/notifications``."""
    ws: list[tuple[str, str, str]] = field(default_factory=list)
    """(message, sender, recipient) for ``sendNotification``."""
    expected: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def make(cls, users: list[str], total: int, *, fanout: int = 10, seed: int = 7) -> Plan:
        """Half the notifications over HTTP (``fanout`` recipients each), half over WS."""
        rng = random.Random(seed)
        plan = cls(expected={user: [] for user in users})
        for i in range(total // 2 // fanout):
            recipients = rng.sample(users, fanout)
            plan.http.append((f"h{i}", recipients))
            for user in recipients:
                plan.expected[user].append(f"h{i}")
        for i in range(total - len(plan.http) * fanout):
            sender, to = rng.choice(users), rng.choice(users)
            plan.ws.append((f"w{i}", sender, to))
            plan.expected[to].append(f"w{i}")
        return plan

    @property
    def total(self) -> int:
        return sum(len(messages) for messages in self.expected.values())


class Progress:
    def __init__(self, total: int, *, rate: float = 0) -> None:
        self.total = total
        self.done = 0
        self.rate = rate
        """Notifications per second to publish at most; 0: as fast as they go."""
        self._issued = 0
        self._start = time.monotonic()
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    async def pace(self, count: int) -> None:
        """Wait for the turn of the next ``count`` notifications."""
        self._issued += count
        if self.rate:
            await asyncio.sleep(self._start + self._issued / self.rate - time.monotonic())

    def add(self, count: int) -> None:
        self.done += count
        for share, future in self._waiters:
            if self.done >= share * self.total and not future.done():
                future.set_result(None)

    async def reached(self, share: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((share, future))
        self.add(0)
        await asyncio.wait_for(future, 60)


async def publish_http(
    nodes: Nodes, jobs: list[tuple[str, list[str]]], progress: Progress, *, concurrency: int = 8
) -> None:
    """Spread over the live nodes; a node that fails is left for the next, same key."""
    queue = list(enumerate(jobs))
    async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as http:

        async def worker() -> None:
            while queue:
                n, (message, recipients) = queue.pop()
                await progress.pace(len(recipients))
                for attempt in range(200):
                    live = nodes.live
                    node = live[(n + attempt) % len(live)]
                    try:
                        response = await http.post(
                            node.url + "/v1/notifications",
                            json={"userIds": recipients, "message": message},
                            headers={"Idempotency-Key": message},
                        )
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                        continue
                    if response.status_code == 201:
                        progress.add(len(recipients))
                        break
                    assert response.status_code == 503, response.text
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"publish {message} failed on every node")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def broadcast(nodes: Nodes, ledger: Ledger, until: Callable[[], bool]) -> None:
    """Publish to ``everyone`` over the live nodes in turn, one at a time, until
    ``until()``; a node that fails is left for the next, same key."""
    async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as http:
        n = 0
        while not until():
            message = f"b{n}"
            for attempt in range(200):
                node = nodes.live[(n + attempt) % len(nodes.live)]
                try:
                    response = await http.post(
                        node.url + "/v1/notifications",
                        json={"topic": "everyone", "message": message},
                        headers={"Idempotency-Key": message},
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 201:
                    break
                assert response.status_code == 503, response.text
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"broadcast {message} failed on every node")
            ledger.ack(message, ["everyone"])
            n += 1
            await asyncio.sleep(0.02)


def check_broadcasts(ledger: Ledger, clients: list[Client]) -> None:
    """Every client has every acked broadcast once, in order."""
    for i, client in enumerate(clients):
        ledger.follow(f"{client.user}/{i}", "everyone", client.broadcasts)
    counts = ledger.count()
    print(f"everyone: {counts}")
    counts.check()


async def publish_ws(
    clients: dict[str, Client], jobs: list[tuple[str, str, str]], progress: Progress
) -> None:
    """Each sender sends its share with up to 4 sends in flight."""
    by_sender: dict[str, list[tuple[str, str]]] = {}
    for message, sender, to in jobs:
        by_sender.setdefault(sender, []).append((message, to))

    async def sender(user: str, mine: list[tuple[str, str]]) -> None:
        window = asyncio.Semaphore(4)

        async def one(message: str, to: str) -> None:
            async with window:
                await progress.pace(1)
                reply = await clients[user].send(to, message)
                assert reply["type"] == "ack", reply
                progress.add(1)

        await asyncio.gather(*(one(message, to) for message, to in mine))

    await asyncio.gather(*(sender(user, mine) for user, mine in by_sender.items()))


async def publish(nodes: Nodes, clients: dict[str, Client], plan: Plan, progress: Progress) -> None:
    await asyncio.gather(
        publish_http(nodes, plan.http, progress), publish_ws(clients, plan.ws, progress)
    )


async def wait_complete(clients: list[Client], plan: Plan, timeout: float = 30) -> None:
    """Until every client has its user's whole stream, then a moment for duplicates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(c.seqs) >= len(plan.expected[c.user]) or c.stopping for c in clients):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    ledger = Ledger()
    for user, messages in plan.expected.items():
        for message in messages:
            ledger.ack(message, [user])
    for i, c in enumerate(clients):
        ledger.follow(f"{c.user}/{i}", c.user, c.frames)
    counts = ledger.count()
    print(f"\n{counts}")
    problems = []
    for c in clients:
        expected = plan.expected[c.user]
        if c.errors:
            problems.append(f"{c.user}: {c.errors[:3]}")
        if c.seqs != list(range(1, len(expected) + 1)):
            problems.append(f"{c.user}: got {len(c.seqs)} of {len(expected)}, last {c.last}")
        elif sorted(c.messages) != sorted(expected):
            problems.append(f"{c.user}: wrong messages")
    assert not problems, f"{len(problems)} problems, {counts}:\n" + "\n".join(problems[:20])
    counts.check()


def spread(users: list[str], nodes: Nodes, *, second_every: int = 5) -> list[Client]:
    """One connection per user, round-robin over the nodes; every ``second_every``-th
    user also has a second connection on the next node (another device)."""
    live = nodes.live
    clients = [Client(u, nodes, live[i % len(live)]) for i, u in enumerate(users)]
    clients += [
        Client(u, nodes, live[(i + 1) % len(live)])
        for i, u in enumerate(users)
        if second_every and i % second_every == 0
    ]
    return clients


async def run_stream(
    nodes: Nodes,
    *,
    users: int,
    total: int,
    during: Callable[[Progress], Any] | None = None,
    rate: float = 0,
    timeout: float = 60,
) -> list[Client]:
    """Connect, publish ``plan``, optionally disturb the cluster mid-stream, verify."""
    names = [f"user{i}" for i in range(users)]
    plan = Plan.make(names, total)
    clients = spread(names, nodes)
    first = {c.user: c for c in reversed(clients)}
    await connect_all(clients)
    progress = Progress(plan.total, rate=rate)
    try:
        work = [publish(nodes, first, plan, progress)]
        if during is not None:
            work.append(during(progress))
        await asyncio.gather(*work)
        await wait_complete(clients, plan, timeout)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return clients


# -- the tests ------------------------------------------------------------------


async def test_three_nodes_deliver_every_notification_once_in_order(
    nodes: Callable[..., Nodes],
) -> None:
    group = nodes(3)
    started = time.monotonic()
    clients = await run_stream(group, users=300, total=10_000)
    assert all(c.connects == 1 for c in clients)
    print(f"10k notifications to 360 connections on 3 nodes: {time.monotonic() - started:.1f}s")


async def test_a_redis_restart_mid_stream_loses_and_duplicates_nothing(
    nodes: Callable[..., Nodes], own_redis: RedisServer
) -> None:
    group = nodes(3, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
    restarted = []

    async def restart_redis(progress: Progress) -> None:
        await progress.reached(0.3)
        own_redis.kill()
        await asyncio.sleep(0.5)  # publishes go on meanwhile: stored and acked
        own_redis.start()
        restarted.append(progress.done)

    await run_stream(group, users=300, total=5_000, during=restart_redis)
    assert restarted and restarted[0] < 5_000
    for node in group.all:
        assert "Redis broker link restored" in node.log()


async def test_a_node_killed_mid_stream_its_clients_resume_elsewhere(
    nodes: Callable[..., Nodes],
) -> None:
    group = nodes(3)
    victim = group.all[0]
    ledger = Ledger()

    async def kill_a_node(progress: Progress) -> None:
        await progress.reached(0.4)
        group.retire(victim)
        victim.kill()

    async def disturb(progress: Progress) -> None:
        done = lambda: progress.done >= 0.8 * progress.total  # noqa: E731
        await asyncio.gather(kill_a_node(progress), broadcast(group, ledger, done))

    clients = await run_stream(group, users=300, total=5_000, during=disturb)
    check_broadcasts(ledger, clients)
    moved = [c for c in clients if c.closes]
    assert moved and all(c.node is not victim for c in clients)
    assert all(code == 1006 for c in moved for code in c.closes)


async def test_sigterm_drains_one_node_and_its_clients_lose_nothing(
    nodes: Callable[..., Nodes],
) -> None:
    group = nodes(2, "--drain-grace", "0.6")
    leaving = group.all[0]
    drained: list[int] = []

    async def drain_a_node(progress: Progress) -> None:
        await progress.reached(0.25)
        group.retire(leaving)
        leaving.signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(leaving.ws_url, token=leaving.token("late"))
        assert refused.value.response.status_code == 503
        assert await asyncio.to_thread(leaving.wait, 15) == 0
        drained.append(progress.done)

    total = 4_000
    clients = await run_stream(group, users=100, total=total, rate=2_000, during=drain_a_node)
    # At least a quarter of a second of traffic (500 notifications) after the node left.
    assert drained and drained[0] <= total - 500, "the stream should go on after the drain"
    moved = [c for c in clients if c.closes]
    assert moved and all(c.closes == [1012] for c in moved)
    assert all(c.node is group.all[1] for c in clients)


async def test_three_nodes_migrate_a_fresh_schema_at_once(
    nodes: Callable[..., Nodes], schema: str
) -> None:
    group = nodes(3)
    rows = await pg_fetch(f"SELECT version FROM {schema}.schema_version")
    assert len(rows) == 1
    from tidings.store.postgres.schema import MIGRATIONS

    assert rows[0]["version"] == len(MIGRATIONS)
    async with httpx.AsyncClient(headers=admin_headers()) as http:
        replies = await asyncio.gather(
            *(
                http.post(node.url + "/v1/notifications", json={"userId": "bob", "message": "m"})
                for node in group.all
            )
        )
    assert sorted(r.json()["recipients"][0]["seq"] for r in replies) == [1, 2, 3]


async def test_one_user_hammered_from_three_nodes_gets_gapless_seqs_in_commit_order(
    nodes: Callable[..., Nodes], schema: str
) -> None:
    """Sequential publishers on each node over HTTP and WebSocket: the acked seqs
    are exactly 1..N; a publish acked before another was sent has a lower seq;
    watchers on every node receive 1..N in order."""
    group = nodes(3)
    watchers = [Client("hot", group, node) for node in group.all]
    senders = [Client(f"sender{i}", group, node) for i, node in enumerate(group.all)]
    await connect_all(watchers + senders)
    acks: list[tuple[float, float, int]] = []
    per_publisher = 50

    async def over_http(node: ServerProcess, name: str) -> None:
        async with httpx.AsyncClient(headers=admin_headers()) as http:
            for i in range(per_publisher):
                sent = time.monotonic()
                response = await http.post(
                    node.url + "/v1/notifications", json={"userId": "hot", "message": f"{name}{i}"}
                )
                acks.append((sent, time.monotonic(), response.json()["recipients"][0]["seq"]))

    async def over_ws(client: Client) -> None:
        for i in range(per_publisher):
            sent = time.monotonic()
            reply = await client.send("hot", f"{client.user}-{i}")
            acks.append((sent, time.monotonic(), reply["seq"]))

    try:
        await asyncio.gather(
            *(over_http(node, f"http{i}-") for i, node in enumerate(group.all)),
            *(over_ws(client) for client in senders),
        )
        total = per_publisher * 6
        assert sorted(seq for _, _, seq in acks) == list(range(1, total + 1))
        by_ack = sorted(acks, key=lambda a: a[1])
        for sent, _, seq in acks:
            earlier = [s for _, acked, s in by_ack if acked < sent]
            assert not earlier or max(earlier) < seq
        rows = await pg_fetch(f"SELECT seq FROM {schema}.notifications WHERE user_id = 'hot'")
        assert sorted(row["seq"] for row in rows) == list(range(1, total + 1))
        deadline = time.monotonic() + 20
        while any(len(w.seqs) < total for w in watchers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for watcher in watchers:
            assert not watcher.errors
            assert watcher.seqs == list(range(1, total + 1))
    finally:
        await asyncio.gather(*(c.close() for c in watchers + senders))
