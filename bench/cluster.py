"""Scale-out figures on PostgreSQL + Redis: 1 node vs 2, and gap repair after a Redis restart.

Throughput: ``--users`` users, one ``since=0`` WebSocket each, spread over
the nodes, and ``--notifications`` notifications published, spread over the
nodes too: by default from ``--senders`` WebSocket senders keeping
``--window`` sends in flight each (one recipient per send); with
``--via http``, as HTTP publishes of ``--fanout`` recipients with
``--concurrency`` requests in flight. The figure is notifications stored
*and* delivered per second: from the first publish until every client holds
its user's whole stream, each seq once and in order (checked).

Gap repair: two nodes on a redis-server of our own. Redis is stopped, node A
publishes ``--missed`` notifications (stored, acked, delivered to A's own
sockets; B's sockets miss them), then Redis starts again. Reported: from
Redis accepting connections to B's broker link being restored (reconnect
backoff), and from there to every client on B holding everything (the repair
itself: one batched head query, then a store read per connection behind).

Needs PostgreSQL and Redis on 127.0.0.1 (as the tests do) and redis-server
on PATH. Prints the figures and writes bench/results/cluster.json.

    .venv/bin/python -m bench.cluster [--users 500] [--notifications 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.server import SECRET, ServerProcess, free_port
from websockets.asyncio.client import ClientConnection, connect

from tidings.core.tokens import mint

RESULTS = Path(__file__).parent / "results" / "cluster.json"
POSTGRES = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")


class Client:
    """One since=0 connection that counts what it gets and checks the order."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.last = 0
        self.errors = 0
        self.ws: ClientConnection | None = None
        self.caught_up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, node: ServerProcess) -> None:
        token = mint(SECRET, self.user, ttl_seconds=3600)
        self.ws = await connect(
            f"{node.ws_url}?token={token}&since=0", max_queue=None, ping_interval=None
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            frame = orjson.loads(raw)
            if frame["type"] == "notification":
                if frame["seq"] == self.last + 1:
                    self.last += 1
                else:
                    self.errors += 1
            elif frame["type"] == "caughtUp":
                self.caught_up.set()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


async def connect_all(clients: list[Client], nodes: list[ServerProcess]) -> None:
    gate = asyncio.Semaphore(50)

    async def one(i: int, client: Client) -> None:
        async with gate:
            await client.start(nodes[i % len(nodes)])
            await asyncio.wait_for(client.caught_up.wait(), 30)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))


async def publish(
    nodes: list[ServerProcess], batches: list[list[str]], args: argparse.Namespace
) -> None:
    if args.via == "ws":
        await publish_ws(nodes, [user for batch in batches for user in batch], args)
    else:
        await publish_http(nodes, batches, args.concurrency)


async def publish_ws(nodes: list[ServerProcess], recipients: list[str], args: Any) -> None:
    token = mint(SECRET, "bench", ttl_seconds=3600)
    shares = [recipients[i :: args.senders] for i in range(args.senders)]

    async def sender(i: int, mine: list[str]) -> None:
        url = f"{nodes[i % len(nodes)].ws_url}?token={token}"
        async with connect(url, max_queue=None, ping_interval=None) as ws:
            sent = acked = 0
            while acked < len(mine):
                while sent < len(mine) and sent - acked < args.window:
                    message = f"bench {i}.{sent} " + "x" * 80
                    frame = {"action": "sendNotification", "userId": mine[sent], "message": message}
                    await ws.send(orjson.dumps({**frame, "requestId": sent}).decode())
                    sent += 1
                reply = orjson.loads(await ws.recv())
                if reply["type"] != "ack":
                    raise RuntimeError(f"send failed: {reply}")
                acked += 1

    await asyncio.gather(*(sender(i, mine) for i, mine in enumerate(shares)))


async def publish_http(
    nodes: list[ServerProcess], batches: list[list[str]], concurrency: int
) -> None:
    headers = {"Authorization": f"Bearer {mint(SECRET, 'bench', ttl_seconds=3600, admin=True)}"}
    queue = list(enumerate(batches))
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:

        async def worker() -> None:
            while queue:
                n, recipients = queue.pop()
                node = nodes[n % len(nodes)]
                response = await http.post(
                    node.url + "/v1/notifications",
                    json={"userIds": recipients, "message": f"bench {n} " + "x" * 80},
                )
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def wait_for(clients: list[Client], expected: dict[str, int], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while any(c.last < expected[c.user] for c in clients):
        if time.monotonic() > deadline:
            behind = sum(1 for c in clients if c.last < expected[c.user])
            raise RuntimeError(f"{behind} clients incomplete after {timeout:g} s")
        await asyncio.sleep(0.005)
    return time.monotonic()


def plan(users: list[str], total: int, fanout: int) -> tuple[list[list[str]], dict[str, int]]:
    rng = random.Random(1)
    batches = [rng.sample(users, fanout) for _ in range(total // fanout)]
    expected = dict.fromkeys(users, 0)
    for batch in batches:
        for user in batch:
            expected[user] += 1
    return batches, expected


def fanout(args: argparse.Namespace) -> int:
    return int(args.fanout) if args.via == "http" else 1


def start_nodes(tmp: Path, count: int, db: str, broker: str) -> list[ServerProcess]:
    nodes = [
        ServerProcess(
            tmp / f"node{i}",
            "--db",
            db,
            "--broker",
            broker,
            "--log-level",
            "warning",
            "--user-send",
            "any",
        )
        for i in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda node: node.start(), nodes))
    return nodes


async def drop_schema(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


async def throughput(tmp: Path, node_count: int, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_cluster_{uuid.uuid4().hex[:10]}"
    db = f"{POSTGRES}?schema={name}&pool_size={args.pool_size}"
    nodes = start_nodes(tmp / name, node_count, db, f"{REDIS}?prefix={name}")
    users = [f"user{i}" for i in range(args.users)]
    clients = [Client(u) for u in users]
    load = os.getloadavg()[0]
    try:
        await connect_all(clients, nodes)
        batches, expected = plan(users, args.notifications, fanout(args))
        total = sum(expected.values())
        start = time.monotonic()
        await publish(nodes, batches, args)
        acked = time.monotonic()
        done = await wait_for(clients, expected, timeout=300)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        for node in nodes:
            node.stop()
        await drop_schema(name)
    return {
        "nodes": node_count,
        "load_average_before": round(load, 2),
        "notifications": total,
        "stored_and_delivered_per_s": round(total / (done - start)),
        "acked_per_s": round(total / (acked - start)),
        "seconds": round(done - start, 2),
        "order_errors": sum(c.errors for c in clients),
    }


class OwnRedis:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and return the moment it accepts connections (time.time())."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return time.time()
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def restored_at(node: ServerProcess, after: float) -> float | None:
    """When the node's log says its broker link came back (after ``after``)."""
    for line in node.log().splitlines():
        if '"Redis broker link restored"' in line:
            stamp = json.loads(line)["ts"]
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            if moment >= after:
                return moment
    return None


async def gap_repair(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_repair_{uuid.uuid4().hex[:10]}"
    redis = OwnRedis(tmp)
    redis.start()
    db = f"{POSTGRES}?schema={name}&pool_size={args.pool_size}"
    broker = f"redis://127.0.0.1:{redis.port}/0?prefix={name}"
    a, b = start_nodes(tmp / name, 2, db, broker)
    users = [f"user{i}" for i in range(args.users)]
    on_b = [Client(u) for u in users]
    try:
        await connect_all(on_b, [b])
        redis.kill()
        await asyncio.sleep(0.5)
        batches, expected = plan(users, args.missed, fanout(args))
        await publish([a], batches, args)
        await asyncio.sleep(0.2)
        behind = sum(1 for c in on_b if c.last < expected[c.user])
        up = redis.start()
        done = await wait_for(on_b, expected, timeout=120)
        done_wall = time.time() - (time.monotonic() - done)
        restored = restored_at(b, up - 1) or up
    finally:
        await asyncio.gather(*(c.close() for c in on_b))
        for node in (a, b):
            node.stop()
        redis.kill()
        await drop_schema(name)
    return {
        "missed_notifications": sum(expected.values()),
        "connections_behind": behind,
        "redis_up_to_link_restored_s": round(max(restored - up, 0), 3),
        "link_restored_to_all_repaired_s": round(done_wall - restored, 3),
        "redis_up_to_all_repaired_s": round(done_wall - up, 3),
        "order_errors": sum(c.errors for c in on_b),
    }


async def main(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "note": "load_average_before: other work on the machine; compare runs with similar load",
        "store": "PostgreSQL (synchronous_commit on)",
        "broker": "Redis pub/sub",
        "users": args.users,
        "publish": (
            f"WebSocket sendNotification, {args.senders} senders x {args.window} in flight"
            if args.via == "ws"
            else f"HTTP, {args.fanout} recipients per request, {args.concurrency} in flight"
        ),
        "throughput": [],
    }
    with tempfile.TemporaryDirectory(prefix="tidings-bench-cluster-") as tmp:
        for _ in range(args.repeat):  # interleaved, so load from elsewhere hits both alike
            for node_count in (1, 2):
                run = await throughput(Path(tmp), node_count, args)
                print(f"{node_count} node(s): {run}")
                results["throughput"].append(run)
        for node_count in (1, 2):
            runs = [r for r in results["throughput"] if r["nodes"] == node_count]
            results[f"best_{node_count}_node_per_s"] = max(
                r["stored_and_delivered_per_s"] for r in runs
            )
        results["gap_repair"] = await gap_repair(Path(tmp), args)
        print(f"gap repair: {results['gap_repair']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--via", choices=["ws", "http"], default="ws")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--missed", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
