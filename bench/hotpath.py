"""The broadcast hot path in one process: hub fan-out, connection queueing and
the outbox flush, to real ``WebSocketConnection`` objects over a transport
that only counts bytes. No sockets and no other process, so its CPU time is
steady enough to compare two trees where ``make bench``'s run-to-run noise
(±20 % on a shared 2-core VM) hides a few per cent.

    .venv/bin/python -m bench.hotpath [--connections 1000] [--broadcasts 200]
    PYTHONPATH=../other-tree/src .venv/bin/python -m bench.hotpath   # another tree

``--personal N`` measures the publish path instead: N ``Node.publish`` calls
one after another (each its own commit, SQLite without fsync) to one user with
one connection, the same as above, through the in-process broker.
``--scrape N`` measures N renders of ``/metrics`` (µs per scrape), which run on
the event loop; the figure does not depend on the number of connections.

Prints µs per delivery (best of ``--repeat``) and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import tidings
from tidings.broker.memory import MemoryBroker
from tidings.config import Settings
from tidings.core.cursor import StreamCursor
from tidings.core.keys import Keys
from tidings.core.models import Publication
from tidings.node import Node
from tidings.store import open_store
from tidings.web.runtime import Runtime
from tidings.web.ws import WebSocketConnection

try:
    from tidings.core.frames import text_frame
except ImportError:  # trees before framing moved to core
    from tidings.web.frames import text_frame  # type: ignore[no-redef]


class CountingTransport:
    """What ``WebSocketConnection`` writes to: keeps only a byte count."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _node(store: Any) -> Node:
    wanted = inspect.signature(Node).parameters
    extra = {"user_send": "any"} if "user_send" in wanted else {}
    return Node(store, MemoryBroker(), encode=text_frame, **extra)


async def run(connections: int, broadcasts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'hot.db'}", durable=False)
        node = _node(store)
        runtime = Runtime(node=node, settings=Settings(), keys=Keys.of("s" * 40))
        conns = []
        for i in range(connections):
            conn = WebSocketConnection(runtime)
            conn.connection_made(CountingTransport())  # type: ignore[arg-type]
            conn.user_id = f"user-{i}"
            conn.open = True
            conn.cursor = StreamCursor(0)
            conn.topics = {"everyone": StreamCursor(0)}
            node.hub.add(conn)
            conns.append(conn)
        payload = b'{"type":"notification","topic":"everyone","message":"' + b"x" * 120 + b'"}'
        start = time.process_time()
        for seq in range(1, broadcasts + 1):
            node.hub.deliver(Publication(user_id="", seq=seq, payload=payload, topic="everyone"))
            runtime.outbox.flush()
        spent = time.process_time() - start
        written = sum(conn.transport.written for conn in conns)  # type: ignore[union-attr]
        deliveries = connections * broadcasts
        assert written >= deliveries * len(payload), "frames were not written"
        return {"us_per_delivery": spent / deliveries * 1e6, "deliveries": deliveries}


async def run_personal(publishes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'hot.db'}", durable=False)
        node = _node(store)
        await node.start()
        runtime = Runtime(node=node, settings=Settings(), keys=Keys.of("s" * 40))
        conn = WebSocketConnection(runtime)
        transport = CountingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.user_id = "user-0"
        conn.open = True
        conn.cursor = StreamCursor(0)
        conn.topics = {"everyone": StreamCursor(0)}
        node.hub.add(conn)
        message = "x" * 120
        start = time.process_time()
        for _ in range(publishes):
            await node.publish(["user-0"], message)
            runtime.outbox.flush()
        spent = time.process_time() - start
        await node.stop()
        assert transport.written >= publishes * len(message), "frames were not written"
        return {"us_per_delivery": spent / publishes * 1e6, "deliveries": publishes}


async def run_scrape(scrapes: int) -> dict[str, float]:
    from tidings.metrics import MetricsExporter

    with tempfile.TemporaryDirectory() as tmp:
        node = _node(open_store(f"sqlite:///{Path(tmp) / 'hot.db'}", durable=False))
        exporter = MetricsExporter(Runtime(node=node, settings=Settings(), keys=Keys.of("s" * 40)))
        exporter.render("")
        start = time.process_time()
        for _ in range(scrapes):
            body, _ = exporter.render("")
        spent = time.process_time() - start
        assert b"tidings_deliveries_total" in body
        return {"us_per_delivery": spent / scrapes * 1e6, "deliveries": scrapes}


def _commit(where: Path) -> str:
    """The commit of the tidings tree measured (``git describe``), or "unknown"."""
    done = subprocess.run(
        ["git", "-C", str(where), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--personal", type=int, default=0, metavar="N", help="publishes instead")
    parser.add_argument(
        "--scrape", type=int, default=0, metavar="N", help="metrics renders instead"
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hotpath.json"))
    args = parser.parse_args()
    if args.scrape:
        runs = [asyncio.run(run_scrape(args.scrape)) for _ in range(args.repeat)]
    elif args.personal:
        runs = [asyncio.run(run_personal(args.personal)) for _ in range(args.repeat)]
    else:
        runs = [asyncio.run(run(args.connections, args.broadcasts)) for _ in range(args.repeat)]
    best = min(r["us_per_delivery"] for r in runs)
    if args.scrape:
        shape: dict[str, int] = {"scrapes": args.scrape}
        what = f"{args.scrape:,} metrics scrapes"
    elif args.personal:
        shape = {"personal_publishes": args.personal}
        what = f"{args.personal:,} personal publishes"
    else:
        shape = {"connections": args.connections, "broadcasts": args.broadcasts}
        what = f"{args.connections:,} connections x {args.broadcasts} broadcasts"
    result = {
        "commit": _commit(Path(tidings.__file__).resolve().parent),
        **shape,
        "us_per_delivery_best": round(best, 3),
        "us_per_delivery_runs": [round(r["us_per_delivery"], 3) for r in runs],
    }
    unit = "scrape" if args.scrape else "delivery"
    print(
        f"{what}: {best:.3f} µs per {unit} (best of {args.repeat}; tidings at {result['commit']})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
