"""Instructions per delivery of a whole ``tidings serve`` under callgrind.

``bench/hotpath.py`` counts the fan-out loop alone; this counts everything a
server does for a topic broadcast over real sockets: the HTTP publish, the
store, the hub, the frames and the writes. Instruction counts do not depend
on what else the machine runs, so two trees can be compared on a busy VM
where CPU seconds drift by ±20 % from run to run.

    .venv/bin/python -m bench.server_instructions --tree . --connections 1000
    .venv/bin/python -m bench.server_instructions --tree ../other-tree  # its own .venv
    .venv/bin/python -m bench.server_instructions --personal --connections 50 --broadcasts 20 \
        --server-arg=--publish-rate=0   # each client sends to itself: per stored notification

The server runs under ``valgrind --tool=callgrind``; the counters are zeroed
after the clients connected and a warm-up broadcast arrived, and dumped once
the measured broadcasts arrived, so handshakes and start-up are not counted.
Needs valgrind on PATH; takes a minute or two at 1,000 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.tokens import mint
from tidings.loadtest.httpclient import HttpPool
from tidings.loadtest.wsclient import Client, Endpoint, Tally, close_all, connect_many

SECRET = "s" * 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not answer /healthz under valgrind")


def _callgrind(pid: int, flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, check=True)


def _dumped_total(out: Path) -> int:
    """The instruction total of the dump ``callgrind_control -d`` wrote (``out.1``)."""
    for _ in range(100):
        dump = out.with_name(out.name + ".1")
        if dump.exists():
            match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump next to {out}")


async def measure(
    tree: Path, connections: int, broadcasts: int, *, personal: bool, extra: list[str]
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as data:
        out = Path(data) / "callgrind.out"
        port = _free_port()
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            str(tree / ".venv" / "bin" / "python"),
            "-m",
            "tidings",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data,
            "--secret",
            SECRET,
            "--log-level",
            "warning",
            "--drain-grace",
            "0",
            *extra,
        ]
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            _wait_healthy(port, proc)
            base = f"http://127.0.0.1:{port}"
            endpoint = Endpoint(ws_url=f"ws://127.0.0.1:{port}/ws", http_url=base)
            tally = Tally()
            tokens = [mint(SECRET, f"user-{i}") for i in range(connections)]
            connected = await connect_many(endpoint, tokens, tally, concurrency=50, deadline=600)
            if connected.failed:
                raise RuntimeError(f"{connected.failed} handshakes failed: {connected.first_error}")
            http = HttpPool(base, token=mint(SECRET, "admin", admin=True), size=1)

            async def broadcast(count: int) -> None:
                expected = tally.delivered + count * connections
                for i in range(count):
                    status, answer = await http.post(
                        "/v1/notifications", {"topic": "everyone", "message": f"m{i}"}
                    )
                    if status != 201:
                        raise RuntimeError(f"publish answered {status}: {answer[:200]!r}")
                deadline = time.monotonic() + 300
                while tally.delivered < expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                if tally.delivered < expected:
                    raise RuntimeError(f"{expected - tally.delivered} deliveries missing")

            async def sends(count: int) -> None:
                """Each client sends ``count`` notifications to itself, one at a time."""

                async def one(client: Client, user: str) -> None:
                    for i in range(count):
                        await client.call("sendNotification", {"userId": user, "message": f"m{i}"})

                expected = tally.delivered + count * connections
                clients = connected.clients
                await asyncio.gather(*(one(c, f"user-{c.index}") for c in clients))
                deadline = time.monotonic() + 300
                while tally.delivered < expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)

            work = sends if personal else broadcast
            await work(2)  # warm-up, not counted
            _callgrind(proc.pid, "-z")
            await work(broadcasts)
            _callgrind(proc.pid, "-d")
            total = _dumped_total(out)
            http.close()
            await close_all(connected.clients)
        finally:
            proc.terminate()
            proc.wait(60)
    deliveries = connections * broadcasts
    return {
        "tree": str(tree),
        "workload": "personal" if personal else "topic",
        "server_args": extra,
        "connections": connections,
        "broadcasts": broadcasts,
        "instructions": total,
        "instructions_per_delivery": round(total / deliveries, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path("."), help="a checkout with its .venv")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--broadcasts", type=int, default=20, help="topic broadcasts, or sends per client"
    )
    parser.add_argument(
        "--personal",
        action="store_true",
        help="each client sends --broadcasts notifications to itself (stored, acked, delivered)",
    )
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra tidings serve flag (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/server_instructions.json"))
    args = parser.parse_args()
    extra = [part for arg in args.server_arg for part in arg.split("=", 1)]
    result = asyncio.run(
        measure(
            args.tree.resolve(),
            args.connections,
            args.broadcasts,
            personal=args.personal,
            extra=extra,
        )
    )
    what = "sends to itself" if args.personal else "topic broadcasts"
    print(
        f"{args.connections:,} connections x {args.broadcasts} {what}: "
        f"{result['instructions_per_delivery']:,} instructions per delivery ({result['tree']})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
