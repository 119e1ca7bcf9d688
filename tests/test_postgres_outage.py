"""PostgreSQL lost under the store: stopped or restarted under publish load,
down when the node starts, or a COMMIT that never gets its answer.

Publishers over HTTP and WebSocket keep sending while the server is stopped
with ``pg_ctl stop -m immediate`` (connections cut mid-statement and mid-
COMMIT) or restarted with ``pg_ctl restart -m fast`` (sessions told the
server shuts down). Every failure must be the documented ``unavailable``
(HTTP 503), never ``internal``; every acked notification must be in the store
once it is back and reach its user's subscribers once, in order; and the node
must publish again without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fault_proxy import FaultProxy
from tests.ledger import Ledger
from tests.private_postgres import PrivatePostgres, private_postgres
from tests.server import ServerProcess
from tests.store_contract import request
from tests.test_cli import tidings
from tests.test_multinode import Client, OneNode, connect_all
from tests.wsclient import open_ws
from tidings.core.errors import Unavailable, Unreachable
from tidings.store import open_store
from tidings.store.waiting import open_store_waiting

__all__ = ["private_postgres"]

pytestmark = pytest.mark.slow

HTTP_PUBLISHERS = 32
RECIPIENTS = 5
FANOUT_USERS = 40
WS_SENDERS = 12


class Tally:
    """Every answer the publishers got, by phase and by code."""

    def __init__(self) -> None:
        self.phase = "before"
        self.codes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.messages: collections.Counter[str] = collections.Counter()
        self.acked: set[str] = set()
        self.acked_by: dict[str, set[str]] = collections.defaultdict(set)
        """Which publishers had an ack, by phase."""
        self.ledger = Ledger()

    def ok(self, publisher: str, notification_id: str, message: str, users: list[str]) -> None:
        self.codes[self.phase, "ok"] += 1
        self.acked.add(notification_id)
        self.acked_by[self.phase].add(publisher)
        self.ledger.ack(message, users)

    def error(self, code: str, message: str) -> None:
        self.codes[self.phase, code] += 1
        self.messages[message.split(":", 1)[0]] += 1


async def http_publisher(
    server: ServerProcess, name: str, tally: Tally, stop: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        n = 0
        while not stop.is_set():
            n += 1
            users = [f"user{(n + k) % FANOUT_USERS}" for k in range(RECIPIENTS)]
            message = f"{name}-{n}"
            response = await http.post(
                server.url + "/v1/notifications", json={"userIds": users, "message": message}
            )
            if response.status_code == 201:
                tally.ok(name, response.json()["notificationId"], message, users)
                continue
            try:
                error = response.json()["error"]
                code = error["code"] if response.status_code == 503 else f"http-{error['code']}"
                tally.error(code, error["message"])
            except (ValueError, KeyError):
                tally.error(f"http-{response.status_code}", response.text)
            await asyncio.sleep(0.02)


async def ws_sender(server: ServerProcess, name: str, tally: Tally, stop: asyncio.Event) -> None:
    ws = await open_ws(server.ws_url, token=server.token(name))
    try:
        n = 0
        while not stop.is_set():
            n += 1
            frame = {"action": "sendNotification", "userId": name, "message": f"{name}-{n}"}
            await ws.send(orjson.dumps({**frame, "requestId": n}).decode())
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
            while reply.get("requestId") != n:  # its own notifications come in too
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
            if reply["type"] == "ack":
                tally.ok(name, reply["notificationId"], frame["message"], [name])
            else:
                tally.error(reply["code"], reply["message"])
                await asyncio.sleep(0.02)
    finally:
        await ws.close()


async def stored(url: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The ids, and the ``(user, message)`` pairs, of every stored notification."""
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id, user_id, message FROM tidings.notifications")
    finally:
        await conn.close()
    return {row["id"] for row in rows}, {(row["user_id"], row["message"]) for row in rows}


async def subscribers(server: ServerProcess, ledger: Ledger, users: list[str]) -> list[Client]:
    """One connection with ``since`` per user, counted by ``ledger``."""
    clients = [Client(user, OneNode(server), server) for user in users]
    for client in clients:
        ledger.follow(client.user, client.user, client.frames)
    await connect_all(clients)
    return clients


async def all_received(ledger: Ledger, timeout: float = 20) -> None:
    """Until every subscriber has what was acked to its user (or the time is up)."""
    deadline = time.monotonic() + timeout
    while any(ledger.missing(name) for name in ledger.frames) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # time for a duplicate to show


async def wait_ready(server: ServerProcess, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            status = (await http.get(server.url + "/readyz")).status_code
            if status == 200 or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("fault", ["stopped", "restarted"])
async def test_postgres_lost_under_load(
    private_postgres: PrivatePostgres, tmp_path: Path, fault: str
) -> None:
    server = ServerProcess(
        tmp_path / "data", env={"TIDINGS_DB": f"{private_postgres.url}?schema=tidings"}
    ).start()
    tally = Tally()
    stop = asyncio.Event()
    names = [f"http{i}" for i in range(HTTP_PUBLISHERS)] + [f"ws{i}" for i in range(WS_SENDERS)]
    users = [f"user{i}" for i in range(FANOUT_USERS)] + [n for n in names if n.startswith("ws")]
    watching = await subscribers(server, tally.ledger, users)
    load: list[asyncio.Task[Any]] = [
        asyncio.create_task(
            (http_publisher if name.startswith("http") else ws_sender)(server, name, tally, stop)
        )
        for name in names
    ]

    async def all_acked(phase: str) -> None:
        deadline = time.monotonic() + 30
        while len(tally.acked_by[phase]) < len(names) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    try:
        await all_acked("before")
        await asyncio.sleep(0.5)
        tally.phase = "down"
        if fault == "stopped":
            await asyncio.to_thread(private_postgres.stop, "immediate")
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_postgres.start)
        else:
            await asyncio.to_thread(private_postgres.restart, "fast")
        tally.phase = "after"
        await all_acked("after")
    finally:
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)
    try:
        await all_received(tally.ledger)
        figures = dict(sorted(tally.codes.items()))
        print(f"\nanswers by (phase, code): {figures}\nerror messages: {dict(tally.messages)}")
        for task in load:
            assert task.exception() is None, task.exception()
        codes = {code for _, code in tally.codes}
        assert codes <= {"ok", "unavailable"}, figures
        assert tally.acked_by["before"] == set(names), figures
        assert tally.codes["down", "unavailable"] > 0, figures
        unanswered = set(names) - tally.acked_by["after"]
        assert not unanswered, f"no ack after the {fault} server for {sorted(unanswered)}"
        ids, pairs = await stored(private_postgres.url)
        missing = tally.acked - ids
        assert not missing, f"{len(missing)} acked notifications are not stored"
        counts = tally.ledger.count(stored=pairs)
        print(counts)
        counts.check()
        assert not [c.errors for c in watching if c.errors]
        assert await wait_ready(server) == 200
    finally:
        await asyncio.gather(*(c.close() for c in watching))
        server.stop()


async def test_commit_without_an_answer_is_an_unknown_outcome(
    private_postgres: PrivatePostgres,
) -> None:
    """The server commits, the connection dies before the answer: the publisher
    is told the write may have been stored (it was), is not acked, and a retry
    with the same idempotency key finds the first result."""
    proxy = FaultProxy(private_postgres.port)
    await proxy.start()
    store = open_store(f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres?schema=tidings")
    await store.open()
    try:
        await store.append(request("bob"))
        proxy.arm(b"COMMIT;")
        with pytest.raises(Unavailable, match="outcome unknown: the write may have been stored"):
            await store.append(request("bob", key="k1"))
        assert proxy.cuts == 1
        again = await store.append(request("bob", key="k1"))
        assert again.duplicate and again.seqs == (("bob", 2),)
        page = await store.read_stream("bob", after_seq=0)
        assert [n.seq for n in page.items] == [1, 2]

        proxy.arm(b"COMMIT;")  # a read's COMMIT lost: unavailable, nothing to be unsure of
        with pytest.raises(Unavailable, match=r"^store read failed"):
            await store.export("bob")
        assert proxy.cuts == 2
        assert (await store.export("bob"))["head"] == 2
    finally:
        await store.close()
        await proxy.stop()


async def test_postgres_down_at_start_is_waited_for(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """A node started before its database logs what it waits for, then starts
    once the server answers, and serves."""
    await asyncio.to_thread(private_postgres.stop, "fast")
    db = f"{private_postgres.url}?schema=tidings"
    server = ServerProcess(tmp_path / "early", "--store-wait", "30", env={"TIDINGS_DB": db})
    starting = asyncio.create_task(asyncio.to_thread(server.start, 40))
    deadline = time.monotonic() + 15
    while "waiting for the store" not in server.log():
        assert time.monotonic() < deadline and not starting.done(), server.log()
        await asyncio.sleep(0.1)
    line = next(line for line in server.log().splitlines() if "waiting for the store" in line)
    assert f"127.0.0.1:{private_postgres.port}" in line and "seconds_left" in line, line
    await asyncio.sleep(1)
    assert not starting.done()
    await asyncio.to_thread(private_postgres.start)
    await starting
    ledger = Ledger()
    watching = await subscribers(server, ledger, ["bob"])
    try:
        headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            for i in range(20):
                body = {"userId": "bob", "message": f"m{i}"}
                response = await http.post("/v1/notifications", json=body)
                assert response.status_code == 201, response.text
                ledger.ack(f"m{i}", ["bob"])
        await all_received(ledger)
        ledger.count(stored=(await stored(private_postgres.url))[1]).check()
        assert "store reachable" in server.log()
    finally:
        await asyncio.gather(*(c.close() for c in watching))
        server.stop()


async def test_migrate_waits_for_postgres_as_serve_does(
    private_postgres: PrivatePostgres,
) -> None:
    """``tidings migrate`` started before its database (a migration job beside
    it) waits up to ``--store-wait``, migrates once the server answers, and
    gives up past the wait with exit 1, naming the wait."""
    await asyncio.to_thread(private_postgres.stop, "fast")
    db = f"{private_postgres.url}?schema=tidings"
    gave_up = await asyncio.to_thread(tidings, "migrate", "--db", db, "--store-wait", "1")
    assert gave_up.returncode == 1, gave_up.stderr
    assert "(gave up after waiting 1 s)" in gave_up.stderr, gave_up.stderr

    waiting = asyncio.create_task(
        asyncio.to_thread(tidings, "migrate", "--db", db, "--store-wait", "25")
    )
    await asyncio.sleep(2)
    assert not waiting.done()
    await asyncio.to_thread(private_postgres.start)
    done = await waiting
    assert done.returncode == 0, done.stderr
    assert "schema migrated from version 0 to" in done.stdout, done.stdout


async def test_waiting_for_postgres_is_bounded_and_a_refusal_is_not_waited_for(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """A database that never comes: exit 1 after ``--store-wait``, naming the
    server. A server that answers with a refusal: no wait at all."""
    refused = open_store(f"postgresql://nobody@127.0.0.1:{private_postgres.port}/postgres")
    started = time.monotonic()
    with pytest.raises(Unavailable, match='role "nobody" does not exist') as failure:
        await open_store_waiting(refused, wait=30)
    assert not isinstance(failure.value, Unreachable)
    assert time.monotonic() - started < 10  # not the 30 s wait

    await asyncio.to_thread(private_postgres.stop, "fast")
    db = f"{private_postgres.url}?schema=tidings"
    never = ServerProcess(tmp_path / "never", "--store-wait", "1", env={"TIDINGS_DB": db})
    with pytest.raises(RuntimeError, match="server exited with 1"):
        await asyncio.to_thread(never.start, 20)
    assert f"cannot open PostgreSQL store at '{private_postgres.url}" in never.log()
    assert "Connection refused (gave up after waiting 1 s)" in never.log(), never.log()
