"""The harness's workloads, built on the installed load generator
(``tidings.loadtest``, which ``tidings bench`` runs too).

Each workload opens its own picows connections, measures one or more
windows and returns a plain dict (JSON-ready). A local server's CPU time and
RSS are read from /proc when ``Endpoint.server_pid`` is set; against a remote
deployment those fields are ``None``. Every loop here is bounded by a count
and by a deadline.

Entry points: ``fanout``, ``personal``, ``capacity``, ``catch_up``, each
opening its own connections; ``fanout_on`` and ``phases`` run on connections
already open (the harness reuses one set per server). One user's token
against any deployment is ``tidings.loadtest.deployment.bench_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from tidings.loadtest.fleet import Fleet, personal, phases
from tidings.loadtest.httpclient import HttpClient, HttpPool
from tidings.loadtest.measure import latency_summary, rss_now, snapshot, window
from tidings.loadtest.wire import payload, subject
from tidings.loadtest.wsclient import Client, Endpoint, Tally, close_all, connect, connect_many

__all__ = [
    "Broadcast",
    "Endpoint",
    "Fleet",
    "action_broadcast",
    "capacity",
    "capacity_row",
    "catch_up",
    "fanout",
    "fanout_on",
    "grow",
    "personal",
    "phases",
    "tidings_broadcast",
]

Broadcast = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
"""Sends one broadcast to every connected client; returns once the server took it."""


# -- how a broadcast reaches each kind of server -----------------------------


def tidings_broadcast(
    http: HttpPool, users: Sequence[str], *, topic: str | None = None
) -> Broadcast:
    """One tidings broadcast = one HTTP publish.

    With ``topic`` (``everyone`` reaches every user): stored once, one frame
    for all. Without: a publish listing every connected user in ``userIds``,
    stored and framed once per user (what a server without topics can do).
    """
    audience: dict[str, Any] = {"topic": topic} if topic else {"userIds": list(users)}

    async def send(body: dict[str, Any]) -> None:
        status, answer = await http.post("/v1/notifications", {**audience, **body})
        if status != 201:
            raise RuntimeError(f"broadcast publish answered {status}: {answer[:200]!r}")

    return send


def action_broadcast(control: Client) -> Broadcast:
    """The peers' emit-to-all, asked for by an admin connection's ``broadcast`` action."""

    async def send(body: dict[str, Any]) -> None:
        await control.call("broadcast", body)

    return send


def http_clients(endpoint: Endpoint, token: str, count: int) -> list[HttpClient]:
    if endpoint.http_url is None:
        raise ValueError("this endpoint has no HTTP publish API")
    return [HttpClient(endpoint.http_url, token=token) for _ in range(count)]


# -- workload 1: broadcast fan-out -------------------------------------------


async def fanout(
    endpoint: Endpoint,
    tokens: Sequence[str],
    broadcast: Callable[[list[Client]], Awaitable[Broadcast]],
    *,
    concurrency: int = 200,
    **options: Any,
) -> dict[str, Any]:
    """Connect one client per token, then ``fanout_on`` them; closes them after."""
    connected = await connect_many(endpoint, tokens, Tally(), concurrency=concurrency)
    result: dict[str, Any] = {
        "failed_connections": connected.failed,
        "first_error": connected.first_error,
        "handshakes_per_second": connected.rate,
    }
    try:
        if connected.clients:
            result.update(await fanout_on(endpoint, connected.clients, broadcast, **options))
    finally:
        await close_all(connected.clients)
    return result


async def fanout_on(
    endpoint: Endpoint,
    clients: list[Client],
    broadcast: Callable[[list[Client]], Awaitable[Broadcast]],
    *,
    duration: float = 5.0,
    max_broadcasts: int = 100_000,
    window_deliveries: int = 20_000,
    max_requests: int = 4,
    sampled: int = 50,
) -> dict[str, Any]:
    """Broadcast to connected ``clients`` (one ``Tally``) as fast as they receive.

    ``broadcast`` is given the clients and returns the sender to use. At most
    ``window_deliveries`` frames are published but not yet received, and at
    most ``max_requests`` broadcasts await the server's answer: the server is
    kept busy without an unbounded queue. The first ``sampled`` clients parse
    their frames for latency; the others only count them.
    """
    pid = endpoint.server_pid
    tally = clients[0].tally
    n = len(clients)
    for index, client in enumerate(clients):
        client.sampled = index < sampled
    send = await broadcast(clients)
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    inflight: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(repr(task.exception()))

    async def settle(expected: int, limit: float) -> None:
        deadline = loop.time() + limit
        while tally.delivered < expected and loop.time() < deadline:
            await asyncio.sleep(0.005)

    # Warm-up: one broadcast delivered everywhere before the clock starts.
    before = tally.delivered
    await send(payload(-1))
    await settle(before + n, 30.0)
    base = tally.delivered
    sent = 0
    tally.latencies = array("q")
    tally.recording = True
    start = snapshot(pid, tally.delivered)
    rss_before = rss_now(pid)
    deadline = loop.time() + duration
    while loop.time() < deadline and sent < max_broadcasts and not failures:
        completed = (tally.delivered - base) // n
        if (sent - completed + 1) * n <= max(window_deliveries, n) and len(inflight) < max_requests:
            task = loop.create_task(send(payload(sent)))
            task.add_done_callback(finished)
            inflight.add(task)
            sent += 1
        else:
            await asyncio.sleep(0.001)
    end = snapshot(pid, tally.delivered)
    tally.recording = False
    if inflight:
        await asyncio.wait(inflight, timeout=30)
    await settle(base + sent * n, 15.0)
    result: dict[str, Any] = {"connections": n}
    result.update(window(start, end))
    result.update(
        broadcasts=sent,
        delivered_after_drain=tally.delivered - base,
        expected=sent * n,
        disconnected=sum(client.closed for client in clients),
        server_rss_before=rss_before,
        server_rss_after=rss_now(pid),
        errors=failures[:3],
        latency=latency_summary(tally.latencies),
    )
    return result


# -- workload 3: capacity ----------------------------------------------------


async def grow(
    endpoint: Endpoint,
    tokens: Sequence[str],
    tally: Tally,
    *,
    first_index: int = 0,
    concurrency: int = 200,
    settle: float = 2.0,
    step_seconds: float = 60.0,
) -> tuple[dict[str, Any], list[Client]]:
    """Open one more idle connection per token and measure what they cost.

    Returns the measurements (handshakes/s and server CPU per handshake over
    the batch, server RSS before and ``settle`` seconds after it, RSS per
    added connection) and the clients, numbered from ``first_index``. Stops
    starting handshakes after ``step_seconds``.
    """
    pid = endpoint.server_pid
    rss_before = rss_now(pid)
    start = snapshot(pid, 0)
    connected = await connect_many(
        endpoint, tokens, tally, concurrency=concurrency, deadline=step_seconds
    )
    end = snapshot(pid, len(connected.clients))
    for client in connected.clients:
        client.index += first_index
    await asyncio.sleep(settle)
    rss_after = rss_now(pid)
    stats = window(start, end, unit="handshake")
    added = len(connected.clients)
    return {
        "added": added,
        "failed": connected.failed,
        "first_error": connected.first_error,
        "handshakes_per_second": stats["per_second"],
        "server_us_per_handshake": stats["server_us_per_handshake"],
        "loadgen_us_per_handshake": stats["loadgen_us_per_handshake"],
        "rss_before": rss_before,
        "server_rss": rss_after,
        "rss_per_added_connection": (rss_after - rss_before) / added
        if rss_after is not None and rss_before is not None and added
        else None,
    }, connected.clients


async def capacity(
    endpoint: Endpoint,
    tokens: Sequence[str],
    *,
    steps: Sequence[int] = (10_000, 20_000),
    concurrency: int = 200,
    settle: float = 2.0,
    step_seconds: float = 60.0,
) -> dict[str, Any]:
    """Idle authenticated connections: RSS per connection at each step, handshakes/s.

    A step that has not connected all its clients within ``step_seconds``
    stops there (its row says how many it reached). Closes them at the end.
    """
    tally = Tally()
    await asyncio.sleep(settle / 2)
    baseline = rss_now(endpoint.server_pid)
    clients: list[Client] = []
    rows = []
    for step in steps:
        row, added = await grow(
            endpoint,
            tokens[len(clients) : step],
            tally,
            first_index=len(clients),
            concurrency=concurrency,
            settle=settle,
            step_seconds=step_seconds,
        )
        clients.extend(added)
        rows.append(capacity_row(row, step, len(clients), baseline))
    await close_all(clients, settle=settle / 2)
    return {"baseline_rss": baseline, "steps": rows}


def capacity_row(
    row: dict[str, Any], step: int, connections: int, baseline: int | None
) -> dict[str, Any]:
    """A ``grow`` row completed with the step, the total and RSS per connection."""
    rss = row.get("server_rss")
    return {
        **row,
        "step": step,
        "connections": connections,
        "rss_per_connection": (rss - baseline) / connections
        if rss is not None and baseline is not None and connections
        else None,
    }


# -- workload 5: catch-up ----------------------------------------------------


async def catch_up(
    endpoint: Endpoint,
    token: str,
    admin_token: str,
    *,
    inbox: int = 10_000,
    repeats: int = 3,
    publishers: int = 32,
    fill_seconds: float = 60.0,
    wait: float = 30.0,
) -> dict[str, Any]:
    """Fill one user's inbox over HTTP, then time reconnects with ``since=0``."""
    loop = asyncio.get_running_loop()
    user = subject(token)
    http = http_clients(endpoint, admin_token, publishers)
    stored = 0
    next_index = 0
    refusal: tuple[int, bytes] | None = None
    deadline = loop.time() + fill_seconds

    async def fill(publisher: HttpClient) -> None:
        nonlocal stored, next_index, refusal
        while next_index < inbox and loop.time() < deadline and refusal is None:
            next_index += 1
            status, body = await publisher.post("/v1/notifications", {"userId": user, **payload(0)})
            if status == 201:
                stored += 1
            else:
                refusal = (status, body[:200])

    started = time.perf_counter()
    await asyncio.gather(*(fill(publisher) for publisher in http))
    fill_time = time.perf_counter() - started
    for publisher in http:
        publisher.close()
    if refusal is not None:
        raise RuntimeError(f"filling the inbox: publish answered {refusal[0]}: {refusal[1]!r}")
    runs = []
    for _ in range(repeats):
        tally = Tally()
        caught_up: asyncio.Future[dict[str, Any]] = loop.create_future()

        def watch(body: dict[str, Any], done: asyncio.Future[dict[str, Any]] = caught_up) -> None:
            if body.get("type") == "caughtUp" and not done.done():
                done.set_result(body)

        start = snapshot(endpoint.server_pid, 0)
        client = await connect(endpoint, token, tally, sampled=True, since=0, on_json=watch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caught_up, wait)
        end = snapshot(endpoint.server_pid, tally.delivered)
        stats = window(start, end, unit="notification")
        runs.append(
            {
                "replayed": tally.delivered,
                "seconds": stats["seconds"],
                "per_second": stats["per_second"],
                "server_us_per_notification": stats["server_us_per_notification"],
                "caught_up": caught_up.done(),
            }
        )
        client.close()
        await asyncio.sleep(0.2)
    best = max(runs, key=lambda run: run["per_second"] or 0.0)
    return {
        "inbox": stored,
        "fill_seconds": fill_time,
        "fill_per_second": stored / fill_time if fill_time else 0.0,
        "runs": runs,
        "per_second": best["per_second"],
    }
