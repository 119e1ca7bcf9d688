"""Another connection's ping round trip while one client floods tiny fragments.

One client sends a single message as ``--fragments`` one-byte frames (a
text frame, then continuation frames) in one burst; meanwhile another user's
connection sends ``ping`` actions one after the other and times each pong.
A server that parses the whole burst in one go makes that ping wait for all
of it. One ping is in flight at a time, so a stall shows as one slow sample
per flood (the p99 and the max), not as many. Prints the round trip
p50/p99/max at rest and during the floods, and writes them to
bench/results/fragment_flood.json under ``--label`` (other labels' figures
are kept, so one file compares several builds).

    .venv/bin/python -m bench.fragment_flood [--fragments 100000] [--rounds 10]
        [--label NAME] [--server-arg=--max-fragments=200000 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from tests.server import ServerProcess
from websockets.asyncio.client import ClientConnection, connect

RESULTS = Path(__file__).parent / "results" / "fragment_flood.json"
MASK = b"\x00\x00\x00\x00"
"""Client frames must be masked; a zero key leaves the payload readable."""


def flood_bytes(fragments: int) -> bytes:
    """One text message as ``fragments`` masked one-byte frames."""
    first = bytes((0x01, 0x81)) + MASK + b"x"
    middle = bytes((0x00, 0x81)) + MASK + b"x"
    last = bytes((0x80, 0x81)) + MASK + b"x"
    return first + middle * (fragments - 2) + last


async def flood_once(port: int, token: str, burst: bytes, timeout: float) -> float:
    """Send the burst on a new connection; seconds until the server answers or closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    start = time.perf_counter()
    writer.write(burst)
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(reader.read(1), timeout)  # a reply frame, a close, or EOF
    elapsed = time.perf_counter() - start
    writer.transport.abort()
    return elapsed


async def ping_loop(ws: ClientConnection, samples: list[tuple[float, float]]) -> None:
    """Ping back to back; each sample is (sent at, round trip seconds)."""
    n = 0
    while True:
        n += 1
        sent = time.perf_counter()
        await ws.send(orjson.dumps({"action": "ping", "requestId": n}).decode())
        reply = orjson.loads(await ws.recv())
        assert reply == {"type": "pong", "requestId": n}, reply
        samples.append((sent, time.perf_counter() - sent))
        await asyncio.sleep(0.001)


def summary(rtts: list[float]) -> dict[str, float | int]:
    ms = sorted(r * 1000 for r in rtts)
    if not ms:
        return {"samples": 0}
    return {
        "samples": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
    }


async def measure(server: ServerProcess, fragments: int, rounds: int) -> dict[str, object]:
    burst = flood_bytes(fragments)
    samples: list[tuple[float, float]] = []
    ws = await connect(f"{server.ws_url}?token={server.token('pinger')}", ping_interval=None)
    pinger = asyncio.create_task(ping_loop(ws, samples))
    await asyncio.sleep(1.0)
    at_rest = [rtt for _, rtt in samples]
    windows = []
    for _ in range(rounds):
        start = time.perf_counter()
        answered = await flood_once(server.port, server.token("flooder"), burst, timeout=30)
        windows.append((start, start + answered))
        await asyncio.sleep(0.3)  # lets the ping in flight at the end land
    pinger.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pinger
    await ws.close()
    during = [rtt for sent, rtt in samples if any(a <= sent <= b for a, b in windows)]
    # A ping sent just before a flood can be the one that waits for it.
    during += [rtt for sent, rtt in samples if any(a - 0.01 <= sent < a for a, _ in windows)]
    return {
        "at_rest": summary(at_rest),
        "during_flood": summary(during),
        "flood_answered_ms_p50": round(statistics.median(b - a for a, b in windows) * 1000, 1),
    }


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def machine() -> str:
    """What a result file says it was measured on."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--label", default="current")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra tidings serve flag (repeatable)"
    )
    args = parser.parse_args()
    extra = [part for arg in args.server_arg for part in arg.split("=", 1)]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        server = ServerProcess(Path(tmp), "--log-level", "warning", *extra).start()
        try:
            figures = await measure(server, args.fragments, args.rounds)
        finally:
            server.stop()
    result = {
        "machine": machine(),
        "load_average": os.getloadavg()[0],
        "fragments": args.fragments,
        "rounds": args.rounds,
        "server_args": extra,
        **figures,
    }
    everything = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    everything[args.label] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(everything, indent=2) + "\n")
    rest, during = figures["at_rest"], figures["during_flood"]
    print(f"{args.label}: {args.fragments:,} one-byte fragments x {args.rounds} floods")
    print(f"  ping at rest:      p50 {rest.get('p50_ms')} ms  p99 {rest.get('p99_ms')} ms")
    print(
        f"  ping during flood: p50 {during.get('p50_ms')} ms  p99 {during.get('p99_ms')} ms"
        f"  max {during.get('max_ms')} ms  ({during.get('samples')} pings)"
    )
    print(f"  flood answered after {figures['flood_answered_ms_p50']} ms (p50)")


if __name__ == "__main__":
    asyncio.run(main())
