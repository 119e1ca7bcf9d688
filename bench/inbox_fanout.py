"""Fan-out figures of the inbox: a publish to a list of users, and a topic broadcast.

Starts a tidings server with its defaults (SQLite, fsync on commit), opens
``--connected`` picows clients (one user each), then measures:

- a publish to a list of ``--list`` users (one HTTP request): time until it is
  stored (the response: stored for every recipient in one transaction), and
  until the last connected recipient received its frame;
- a broadcast to a topic with ``--subscribers`` subscribers (the connected
  users among them): time until stored (one row) and until the last
  connected subscriber received the frame;
- the same to ``everyone``.

Prints the figures and writes them to bench/results/inbox_fanout.json.

    .venv/bin/python -m bench.inbox_fanout [--subscribers 100000] [--connected 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.server import ServerProcess

from tidings.loadtest.procstat import raise_fd_limit
from tidings.loadtest.wsclient import Endpoint, Tally, close_all, connect_many

RESULTS = Path(__file__).parent / "results" / "inbox_fanout.json"


async def until(tally: Tally, count: int, deadline: float) -> float:
    """Seconds until ``tally`` has seen ``count`` notification frames."""
    start = time.perf_counter()
    while tally.delivered < count and time.perf_counter() - start < deadline:
        await asyncio.sleep(0.001)
    if tally.delivered < count:
        raise RuntimeError(f"only {tally.delivered} of {count} frames arrived in {deadline} s")
    return time.perf_counter() - start


async def timed_publish(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    response = await http.post("/v1/notifications", json=body)
    response.raise_for_status()
    return time.perf_counter() - start, response.json()


async def run(subscribers: int, connected: int, listed: int) -> dict[str, Any]:
    raise_fd_limit(connected + 1000)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        server = ServerProcess(Path(tmp), "--log-level", "warning", "--user-send", "any").start()
        try:
            return await measure(server, subscribers, connected, listed)
        finally:
            server.stop()


async def measure(
    server: ServerProcess, subscribers: int, connected: int, listed: int
) -> dict[str, Any]:
    users = [f"user{i}" for i in range(max(subscribers, listed, connected))]
    admin = {"Authorization": f"Bearer {server.token('bench', admin=True)}"}
    endpoint = Endpoint(
        server.ws_url, server.url, server_pid=server.proc.pid if server.proc else None
    )
    tally = Tally()
    async with httpx.AsyncClient(base_url=server.url, headers=admin, timeout=120) as http:
        start = time.perf_counter()
        for first in range(0, subscribers, 10_000):
            chunk = users[first : min(first + 10_000, subscribers)]
            reply = await http.post("/v1/topics/big/subscribers", json={"userIds": chunk})
            reply.raise_for_status()
        subscribe_s = time.perf_counter() - start
        opened = await connect_many(endpoint, [server.token(u) for u in users[:connected]], tally)
        if opened.failed:
            raise RuntimeError(f"{opened.failed} connections failed: {opened.first_error}")
        await asyncio.sleep(1.0)  # subscriptions load right after each handshake
        message = "x" * 150

        before = tally.delivered
        stored_s, _ = await timed_publish(http, {"userIds": users[:listed], "message": message})
        list_last_s = stored_s + await until(tally, before + min(listed, connected), 60)

        before = tally.delivered
        topic_stored_s, _ = await timed_publish(http, {"topic": "big", "message": message})
        topic_last_s = topic_stored_s + await until(tally, before + connected, 60)

        before = tally.delivered
        all_stored_s, _ = await timed_publish(http, {"topic": "everyone", "message": message})
        all_last_s = all_stored_s + await until(tally, before + connected, 60)
        await close_all(opened.clients)
    return {
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "connected": connected,
        "handshakes_per_s": round(opened.rate),
        "list_publish": {
            "recipients": listed,
            "stored_ms": round(stored_s * 1000, 1),
            "last_connected_received_ms": round(list_last_s * 1000, 1),
        },
        "topic_broadcast": {
            "subscribers": subscribers,
            "subscribe_s": round(subscribe_s, 2),
            "stored_ms": round(topic_stored_s * 1000, 1),
            "last_connected_received_ms": round(topic_last_s * 1000, 1),
        },
        "everyone_broadcast": {
            "stored_ms": round(all_stored_s * 1000, 1),
            "last_connected_received_ms": round(all_last_s * 1000, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connected", type=int, default=10_000)
    parser.add_argument("--list", type=int, default=10_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.subscribers, args.connected, args.list))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
