"""One soak run: the server, the traffic, the per-minute samples and the final count."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.server import ServerProcess

from bench.fragment_flood import cpu_model
from bench.soak_ledger import FAULTS
from bench.soak_traffic import Device, Traffic
from tidings.loadtest.measure import Snapshot, latency_summary, snapshot, window
from tidings.loadtest.procstat import open_fds, raise_fd_limit, rss_bytes
from tidings.loadtest.wsclient import Endpoint, Tally, connect

CATCH_UP_SECONDS = 60.0
"""How long the end of a run waits for every device to be back and caught up."""


def _server_args(args: argparse.Namespace) -> list[str]:
    extra = ["--user-send", "any", "--send-buffer-limit", str(args.send_buffer_limit)]
    extra += ["--log-level", "warning"]
    if args.db:
        extra += ["--db", args.db]
    if args.broker:
        extra += ["--broker", args.broker]
    return extra


class Sampler:
    """Per-interval figures of the server and of the traffic."""

    def __init__(self, traffic: Traffic, pid: int) -> None:
        self.traffic = traffic
        self.pid = pid
        self.began = time.monotonic()
        self.last: Snapshot = snapshot(pid, traffic.tally.delivered)
        self.last_events = dict(traffic.events)
        self.series: list[dict[str, Any]] = []

    def sample(self) -> dict[str, Any]:
        traffic = self.traffic
        now = snapshot(self.pid, traffic.tally.delivered)
        cpu = window(self.last, now)
        latencies, traffic.latencies = traffic.latencies, type(traffic.latencies)("q")
        latency = latency_summary(latencies)
        latency.pop("cdf_ms", None)
        events = dict(traffic.events)
        delta = {k: v - self.last_events.get(k, 0) for k, v in events.items()}
        row = {
            "minute": round((time.monotonic() - self.began) / 60, 3),
            "seconds": cpu["seconds"],
            "rss_mib": round((rss_bytes(self.pid) or 0) / 2**20, 1),
            "fds": open_fds(self.pid),
            "connections": sum(d.online for d in traffic.devices),
            "deliveries": cpu["count"],
            "deliveries_per_second": round(float(cpu["per_second"] or 0.0), 1),
            "server_cpu_share": cpu["server_cpu_share"],
            "server_us_per_delivery": cpu["server_us_per_delivery"],
            "loadgen_cpu_share": round(float(cpu["loadgen_cpu_share"] or 0.0), 3),
            "load_average": os.getloadavg()[0],
            "acked": delta.get("acked", 0),
            "publish_errors": delta.get("publish_errors", 0),
            "reconnects": delta.get("connects", 0),
            "latency": latency,
        }
        self.last, self.last_events = now, events
        self.series.append(row)
        print(
            f"soak: {row['minute']:6.2f} min  rss {row['rss_mib']} MiB  fds {row['fds']}  "
            f"{row['deliveries_per_second']:,.0f} deliveries/s  "
            f"{row['server_us_per_delivery'] or 0:.0f} µs/delivery  "
            f"p99 {latency.get('p99_ms', 0):.1f} ms",
            flush=True,
        )
        return row

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.sample()


async def _caught_up(traffic: Traffic, timeout: float) -> dict[str, Any]:
    """Wait until every device is back, live and owed nothing; says how long it took
    (or, past ``timeout``, how many devices were not there yet)."""
    began = time.monotonic()
    for device in traffic.devices:
        device.offline_until = 0.0
    while True:
        offline = sum(not d.online for d in traffic.devices)
        replaying = sum(d.online and not d.live for d in traffic.devices)
        owed = sum(traffic.ledger.missing(d) > 0 for d in traffic.devices)
        seconds = round(time.monotonic() - began, 2)
        if not (offline or replaying or owed) or seconds > timeout:
            done = not (offline or replaying or owed)
            return {
                "seconds": seconds,
                "done": done,
                "offline": offline,
                "replaying": replaying,
                "owed": owed,
            }
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.connections + 512)
    with tempfile.TemporaryDirectory(prefix="tidings-soak-") as tmp:
        server = ServerProcess(Path(tmp), *_server_args(args)).start()
        try:
            assert server.proc is not None
            return await _soak(args, server, server.proc.pid)
        finally:
            server.stop()


async def _soak(args: argparse.Namespace, server: ServerProcess, pid: int) -> dict[str, Any]:
    endpoint = Endpoint(ws_url=server.ws_url, http_url=server.url, server_pid=pid, bearer=True)
    traffic = Traffic(endpoint, server.token("soak-admin", admin=True), server.log)
    users = [f"soak-{i}" for i in range(args.users)]
    tokens = {user: server.token(user, ttl=6 * 3600) for user in users}
    traffic.devices = [
        Device(users[i % len(users)], tokens[users[i % len(users)]])
        for i in range(args.connections)
    ]
    traffic.sender_tokens = [server.token(f"soak-sender-{i}", ttl=6 * 3600) for i in range(4)]
    traffic.senders = [await connect(endpoint, t, Tally()) for t in traffic.sender_tokens]
    started = time.monotonic()
    await asyncio.gather(*(traffic.connect(device) for device in traffic.devices))
    connect_seconds = round(time.monotonic() - started, 2)
    rss_start, fds_start = rss_bytes(pid), open_fds(pid)
    sampler = Sampler(traffic, pid)
    loops = [
        traffic.keep_connected(),
        sampler.every(args.sample_seconds),
        traffic.paced(args.ws_rate, traffic.send_ws),
        traffic.paced(args.http_rate, traffic.send_http),
        traffic.paced(args.topic_rate, traffic.broadcast),
        traffic.paced(args.churn, traffic.churn),
        traffic.paced(args.slow_per_minute / 60, traffic.slow_consumer),
    ]
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.sleep(args.minutes * 60)
        tasks[1].cancel()
        sampler.sample()
        traffic.stop()
        await traffic.settle()
        catch_up = await _caught_up(traffic, CATCH_UP_SECONDS)
        counts = traffic.ledger.count(traffic.devices)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await traffic.close()
    episodes = traffic.episodes
    every = [row["latency"] for row in sampler.series if row["latency"].get("samples")]
    ok = catch_up["done"] and counts["acked_notifications"] > 0
    ok = ok and not any(counts[f] for f in FAULTS)
    ok = ok and all(e["close_code"] == 1008 for e in episodes if e["dropped_by_server"])
    return {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "command": "python -m bench.soak " + " ".join(_options(args)),
        "server_args": _server_args(args),
        "minutes": args.minutes,
        "connections": args.connections,
        "users": args.users,
        "rates": {
            "ws_sends": args.ws_rate,
            "http_publishes": args.http_rate,
            "topic_broadcasts": args.topic_rate,
            "churn": args.churn,
            "slow_per_minute": args.slow_per_minute,
        },
        "connect_seconds": connect_seconds,
        "start": {"rss_mib": round((rss_start or 0) / 2**20, 1), "fds": fds_start},
        "series": sampler.series,
        "worst_p99_ms": max((lat["p99_ms"] for lat in every), default=None),
        "events": dict(traffic.events),
        "close_codes": dict(traffic.close_codes),
        "slow_consumers": {
            "episodes": len(episodes),
            "closed_1008": sum(e["close_code"] == 1008 for e in episodes),
            "runs": episodes,
        },
        "replayed": sum(d.replayed for d in traffic.devices),
        "catch_up_at_end": catch_up,
        "counts": counts,
        "first_error": traffic.first_error,
        "ok": ok,
    }


def _options(args: argparse.Namespace) -> list[str]:
    if args.smoke:
        return ["--smoke"]
    shown = [f"--minutes {args.minutes:g}", f"--connections {args.connections}"]
    return shown + (["--db ...", "--broker ..."] if args.db or args.broker else [])


def summary(document: dict[str, Any]) -> list[str]:
    counts = document["counts"]
    slow = document["slow_consumers"]
    series = document["series"]
    first, last = (series[0], series[-1]) if series else ({}, {})
    return [
        f"soak: {document['minutes']:g} min, {document['connections']:,} devices of "
        f"{document['users']:,} users; {counts['acked_notifications']:,} notifications acked, "
        f"{counts['owed']:,} deliveries owed, {counts['delivered']:,} delivered",
        f"soak: lost {counts['lost']}, duplicated {counts['duplicated']}, "
        f"reordered {counts['reordered']} ({len(counts['faulty_users'])} users with a fault)",
        f"soak: {document['events'].get('churned', 0):,} churned, "
        f"{document['events'].get('connects', 0):,} connects, {document['replayed']:,} frames "
        f"replayed; slow consumers {slow['closed_1008']}/{slow['episodes']} closed with 1008",
        f"soak: server RSS {first.get('rss_mib')} -> {last.get('rss_mib')} MiB, fds "
        f"{first.get('fds')} -> {last.get('fds')}, worst interval p99 "
        f"{document['worst_p99_ms'] or 0:.1f} ms",
    ]
