"""The load generator process: ``python -m bench.worker SPEC.json OUT.json``.

The harness starts one per server, pinned to its own core. The spec names
the workloads to run and their parameters; they run in one session on one
set of connections, in this order:

    connect 1k -> fan-out 1k -> connect to 10k (capacity step) -> fan-out 10k
    -> personal + slow consumers -> connect to 20k (capacity step) -> catch-up

so the expensive handshakes happen once and no workload closes connections
(a mass disconnect costs some servers more than any workload here). Results are written to OUT after
every workload: a session cut short by its timeout keeps what it measured.
Tokens are minted here from the benchmark's secret (``u00000``... receive,
``s000``... send, ``bench-admin`` publishes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.profile import Profiler
from bench.tokens import mint
from tidings.loadtest.fleet import Fleet, no_wrap, phases
from tidings.loadtest.httpclient import HttpPool
from tidings.loadtest.measure import rss_now
from tidings.loadtest.procstat import raise_fd_limit
from tidings.loadtest.wsclient import Client, Endpoint, Tally, close_all, connect

ADMIN = "bench-admin"


def user(index: int) -> str:
    return f"u{index:05d}"


class Session:
    def __init__(self, spec: dict[str, Any], out: Path) -> None:
        target = spec["target"]
        self.endpoint = Endpoint(
            ws_url=target["ws_url"],
            http_url=target.get("http_url"),
            dialect=target.get("dialect", "tidings"),
            server_pid=spec.get("server_pid"),
        )
        self.broadcast_via: str = target.get("broadcast", "action")
        self.topic: str | None = None
        """Set while the tidings fan-out runs as a topic publish."""
        self.broadcast_topic: str | None = target.get("broadcast_topic")
        self.secret: str = spec["secret"]
        self.workloads: list[str] = spec["workloads"]
        self.params: dict[str, dict[str, Any]] = spec.get("params", {})
        self.admin_token = mint(self.secret, ADMIN, admin=True)
        self.out = out
        self.results: dict[str, Any] = {}
        self.clients: list[Client] = []
        self.tally = Tally()
        """Shared by every receiver."""
        self.baseline_rss: int | None = None
        self.tokens: list[str] = []
        self._controls: list[Client] = []
        self.started = time.monotonic()
        profile = spec.get("profile")
        self.profiler = (
            Profiler(profile["py_spy"], spec["server_pid"], Path(profile["dir"]), target["name"])
            if profile and spec.get("server_pid")
            else None
        )

    def around(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Profile the server during phase ``name`` when asked to."""
        return self.profiler.phase(name) if self.profiler else no_wrap(name)

    def save(self) -> None:
        self.results["worker_seconds"] = round(time.monotonic() - self.started, 1)
        self.out.write_text(json.dumps(self.results, indent=1))

    def token(self, index: int) -> str:
        while len(self.tokens) <= index:
            self.tokens.append(mint(self.secret, user(len(self.tokens))))
        return self.tokens[index]

    async def grow(self, count: int, *, measure: bool = False) -> None:
        """Open receivers up to ``count`` (users u00000.. in order), never fewer.

        The session only ever adds connections: some servers pay dearly for
        mass disconnects (python-socketio's cost grows with the square of
        the connection count), which no workload here is about. With
        ``measure``, the batch is a capacity step.
        """
        have = len(self.clients)
        if count <= have:
            return
        params = dict(self.params.get("capacity", {}))
        params.pop("steps", None)
        if not measure:
            params["settle"] = 0.5
        row, added = await loadgen.grow(
            self.endpoint,
            [self.token(index) for index in range(have, count)],
            self.tally,
            first_index=have,
            **params,
        )
        self.clients.extend(added)
        if measure:
            capacity = self.results.setdefault(
                "capacity", {"baseline_rss": self.baseline_rss, "steps": []}
            )
            capacity["steps"].append(
                loadgen.capacity_row(row, count, len(self.clients), self.baseline_rss)
            )
            self.save()

    async def step(self, name: str, run: Callable[[], Awaitable[Any]]) -> None:
        began = time.monotonic()
        try:
            result = await run()
        except Exception as exc:
            result = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(limit=4),
            }
        result["elapsed"] = round(time.monotonic() - began, 1)
        self.results[name] = result
        self.save()

    # -- workloads -----------------------------------------------------------

    async def broadcaster(self, clients: list[Client]) -> loadgen.Broadcast:
        if self.broadcast_via == "userIds":
            assert self.endpoint.http_url is not None
            http = HttpPool(self.endpoint.http_url, token=self.admin_token, size=4)
            users = [user(client.index) for client in clients]
            return loadgen.tidings_broadcast(http, users, topic=self.topic)
        control = await connect(self.endpoint, self.admin_token, Tally())
        self._controls.append(control)
        return loadgen.action_broadcast(control)

    async def fanout(self, size: int, topic: str | None = None) -> Any:
        params = dict(self.params["fanout"])
        params.pop("sizes", None)
        self.topic = topic
        try:
            async with self.around(f"fanout_{size}" + (f"_topic_{topic}" if topic else "")):
                return await loadgen.fanout_on(
                    self.endpoint,
                    [client for client in self.clients[:size] if not client.closed],
                    self.broadcaster,
                    **params,
                )
        finally:
            self.topic = None
            for control in self._controls:
                control.close()
            self._controls.clear()

    async def personal(self) -> Any:
        params = dict(self.params["personal"])
        connections = params.pop("connections")
        senders = [mint(self.secret, f"s{index:03d}") for index in range(params.pop("senders"))]
        http_connections = params.pop("http_connections", 16) if self.endpoint.http_url else 0
        receivers = [client for client in self.clients[:connections] if not client.closed]
        fleet = await Fleet.adopt(
            self.endpoint,
            receivers,
            [user(client.index) for client in receivers],
            senders,
            admin_token=self.admin_token,
            http_connections=http_connections,
        )
        try:
            result = await phases(fleet, around=self.around, **params)
        finally:
            await fleet.release()
        result.update(connections=len(fleet.receivers), senders=len(fleet.senders))
        return result

    async def catchup(self) -> Any:
        token = mint(self.secret, "inbox-owner")
        async with self.around("catchup"):
            return await loadgen.catch_up(
                self.endpoint, token, self.admin_token, **self.params["catchup"]
            )

    async def run(self) -> None:
        """Grow through every size a workload needs, running each at its size."""
        chosen = set(self.workloads)
        sizes = sorted(self.params.get("fanout", {}).get("sizes", [])) if "fanout" in chosen else []
        personal_at = (
            self.params.get("personal", {}).get("connections", 0)
            if chosen & {"personal", "slow"}
            else 0
        )
        steps = self.params.get("capacity", {}).get("steps", []) if "capacity" in chosen else []
        settle = self.params.get("capacity", {}).get("settle", 2.0)
        await asyncio.sleep(settle / 2)
        self.baseline_rss = rss_now(self.endpoint.server_pid)
        fanout: dict[str, Any] = {}
        by_topic: dict[str, Any] = {}
        for level in sorted({*sizes, *steps, personal_at} - {0}):
            async with self.around(f"connect_{level}"):
                await self.grow(level, measure=level in steps)
            if level in sizes:
                await self.step("_fanout", functools.partial(self.fanout, level))
                fanout[str(level)] = self.results.pop("_fanout")
                self.results["fanout"] = fanout
                if self.broadcast_topic:
                    await self.step(
                        "_fanout", functools.partial(self.fanout, level, self.broadcast_topic)
                    )
                    by_topic[str(level)] = self.results.pop("_fanout")
                    self.results["fanout_topic"] = by_topic
                self.save()
            if level == personal_at:
                await self.step("personal", self.personal)
        if "catchup" in chosen:
            await self.step("catchup", self.catchup)
        await close_all(self.clients)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    raise_fd_limit(int(spec.get("fd_limit", 65536)))
    session = Session(spec, Path(args[1]))
    try:
        import uvloop
    except ImportError:
        asyncio.run(session.run())
    else:
        uvloop.run(session.run())
    session.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
