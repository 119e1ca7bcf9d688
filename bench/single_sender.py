"""Acked notifications per second from one WebSocket sender, default durability.

Starts a tidings server (SQLite, fsync on every commit) in a temporary data
directory and measures: one sender awaiting each ack before the next send
(latency bound: one commit per notification), and one sender keeping a
window of sends in flight (group commit batches them). Prints the figures
and writes them to bench/results/single_sender.json.

    .venv/bin/python -m bench.single_sender [--count 5000] [--window 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import orjson
from tests.server import ServerProcess
from websockets.asyncio.client import connect

RESULTS = Path(__file__).parent / "results" / "single_sender.json"


async def sequential(url: str, count: int) -> float:
    async with connect(url, max_queue=None) as ws:
        start = time.perf_counter()
        for i in range(count):
            await ws.send(
                orjson.dumps(
                    {
                        "action": "sendNotification",
                        "userId": f"u{i % 100}",
                        "message": "x" * 120,
                        "requestId": i,
                    }
                ).decode()
            )
            reply = orjson.loads(await ws.recv())
            assert reply["type"] == "ack", reply
        return count / (time.perf_counter() - start)


async def windowed(url: str, count: int, window: int) -> float:
    async with connect(url, max_queue=None) as ws:
        start = time.perf_counter()
        sent = acked = 0
        while acked < count:
            while sent < count and sent - acked < window:
                await ws.send(
                    orjson.dumps(
                        {
                            "action": "sendNotification",
                            "userId": f"u{sent % 100}",
                            "message": "x" * 120,
                            "requestId": sent,
                        }
                    ).decode()
                )
                sent += 1
            reply = orjson.loads(await ws.recv())
            assert reply["type"] == "ack", reply
            acked += 1
        return count / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        server = ServerProcess(Path(tmp), "--log-level", "warning", "--user-send", "any").start()
        try:
            url = f"{server.ws_url}?token={server.token('sender')}"
            seq_rate = await sequential(url, min(args.count, 2000))
            win_rate = await windowed(url, args.count, args.window)
        finally:
            server.stop()
    result = {
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "durability": "full (SQLite WAL, synchronous=FULL)",
        "sequential_acks_per_s": round(seq_rate),
        "windowed_acks_per_s": round(win_rate),
        "window": args.window,
        "count": args.count,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"one sender, await each ack:     {seq_rate:8.0f} acked notifications/s")
    print(f"one sender, {args.window:3d} sends in flight: {win_rate:8.0f} acked notifications/s")


if __name__ == "__main__":
    asyncio.run(main())
