"""A quiet user's publish round trip while another user floods publishes.

``--flooders`` connections of one user send ``sendNotification`` as fast as
the server answers (``--window`` unanswered each); meanwhile a second user
sends one notification at a time and times each ack (stored and committed,
so the store's queue is in the figure). Run once with the publish and frame
rates at their defaults and once with them off (``--publish-rate 0
--frame-rate 0``): the limits should keep the quiet user's p99 near its value
at rest, where without them the flood fills every group commit. Writes
bench/results/rate_flood.json.

    .venv/bin/python -m bench.rate_flood [--seconds 5] [--flooders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from tests.server import ServerProcess
from websockets.asyncio.client import ClientConnection, connect

from bench.fragment_flood import machine, summary

RESULTS = Path(__file__).parent / "results" / "rate_flood.json"
OFF = ("--publish-rate", "0", "--frame-rate", "0")


async def flood(ws: ClientConnection, window: int, counts: dict[str, int]) -> None:
    """Publish without waiting, at most ``window`` unanswered; count the answers."""
    room = asyncio.Semaphore(window)

    async def read() -> None:
        async for raw in ws:
            kind = orjson.loads(raw).get("type")
            if kind in ("ack", "error"):
                counts[kind] += 1
                room.release()

    reader = asyncio.create_task(read())
    try:
        for n in itertools.count():
            await room.acquire()
            frame = {"action": "sendNotification", "userId": "flooder", "message": f"f{n}"}
            await ws.send(orjson.dumps({**frame, "requestId": n}).decode())
    finally:
        reader.cancel()


async def quiet_loop(ws: ClientConnection, samples: list[float]) -> None:
    """One notification to itself at a time; each sample is its ack's round trip."""
    for n in itertools.count():
        sent = time.perf_counter()
        frame = {"action": "sendNotification", "userId": "quiet", "message": f"q{n}"}
        await ws.send(orjson.dumps({**frame, "requestId": n}).decode())
        while True:
            reply = orjson.loads(await ws.recv())
            if reply.get("requestId") == n:
                break
        assert reply["type"] == "ack", reply
        samples.append(time.perf_counter() - sent)
        await asyncio.sleep(0.1)  # 10/s: well inside the default publish rate


async def measure(
    server: ServerProcess, seconds: float, flooders: int, window: int
) -> dict[str, Any]:
    quiet = await connect(f"{server.ws_url}?token={server.token('quiet')}", ping_interval=None)
    rest: list[float] = []
    pinger = asyncio.create_task(quiet_loop(quiet, rest))
    await asyncio.sleep(seconds)
    pinger.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pinger
    url = f"{server.ws_url}?token={server.token('flooder')}"
    floods = [await connect(url, ping_interval=None, max_queue=None) for _ in range(flooders)]
    counts = {"ack": 0, "error": 0}
    tasks = [asyncio.create_task(flood(ws, window, counts)) for ws in floods]
    await asyncio.sleep(0.5)  # the flood reaches its pace
    during: list[float] = []
    acked_before = counts["ack"]
    pinger = asyncio.create_task(quiet_loop(quiet, during))
    await asyncio.sleep(seconds)
    acked = counts["ack"] - acked_before
    for task in (pinger, *tasks):
        task.cancel()
    for task in (pinger, *tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for ws in (quiet, *floods):
        with contextlib.suppress(Exception):
            await ws.close()
    return {
        "quiet_at_rest": summary(rest),
        "quiet_during_flood": summary(during),
        "flood_acked_per_second": round(acked / seconds),
        "flood_refused": counts["error"],
    }


async def run(label: str, extra: tuple[str, ...], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        server = ServerProcess(Path(tmp), "--log-level", "warning", *extra, rate_limits=True)
        server.start()
        try:
            figures = await measure(server, args.seconds, args.flooders, args.window)
        finally:
            server.stop()
    rest, during = figures["quiet_at_rest"], figures["quiet_during_flood"]
    print(
        f"{label}: quiet ack p99 at rest {rest.get('p99_ms')} ms, during the flood "
        f"{during.get('p99_ms')} ms (p50 {during.get('p50_ms')}); the flood got "
        f"{figures['flood_acked_per_second']:,} acks/s, {figures['flood_refused']:,} refusals"
    )
    return {"server_args": list(extra), **figures}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "load_average": os.getloadavg()[0],
        "seconds": args.seconds,
        "flooders": args.flooders,
        "limits_on": await run("limits on (defaults)", (), args),
        "limits_off": await run("limits off", OFF, args),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
