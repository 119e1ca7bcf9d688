"""Personal notifications (workloads 2 and 4): a fleet of one-user connections,
senders that publish to random users, and the phases measured on it.

A phase is closed loop (``saturate``: each sender keeps a few sends
outstanding) or open loop (``at_rate``: a fixed rate, latency measured
send-to-receipt in this process). Each is bounded by its duration and by a
count, and drains for a bounded time after its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from tidings.loadtest.httpclient import HttpClient
from tidings.loadtest.measure import Snapshot, latency_summary, rss_now, snapshot, window
from tidings.loadtest.wire import payload, subject
from tidings.loadtest.wsclient import Client, Connected, Endpoint, Tally, close_all, connect_many

Around = Callable[[str], contextlib.AbstractAsyncContextManager[None]]
"""Wraps each measured phase, given its name."""


@contextlib.asynccontextmanager
async def no_wrap(name: str) -> AsyncIterator[None]:
    yield


class Fleet:
    """Receivers (one user each), WebSocket senders and HTTP publishers, connected."""

    def __init__(self, endpoint: Endpoint, tally: Tally) -> None:
        self.endpoint = endpoint
        self.tally = tally
        self.receivers: list[Client] = []
        self.users: list[str] = []
        self.senders: list[Client] = []
        self.http: list[HttpClient] = []
        self.connected: Connected | None = None
        self.copies = 1
        """Deliveries one send makes (each user has one connection, unless all share one)."""
        self.drain_seconds = 3.0
        """How long a phase waits, after its window, for what is still in flight."""
        self.rng = random.Random(7)
        self.first_error: dict[str, Any] | None = None
        """The first error frame a send got (``None`` for a dropped connection)."""

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        receiver_tokens: Sequence[str],
        sender_tokens: Sequence[str],
        *,
        admin_token: str | None = None,
        http_connections: int = 0,
        concurrency: int = 200,
    ) -> Fleet:
        """Connect one receiver per token, then the senders and HTTP publishers."""
        connected = await connect_many(endpoint, receiver_tokens, Tally(), concurrency=concurrency)
        users = [subject(receiver_tokens[client.index]) for client in connected.clients]
        fleet = await cls.adopt(
            endpoint,
            connected.clients,
            users,
            sender_tokens,
            admin_token=admin_token,
            http_connections=http_connections,
        )
        fleet.connected = connected
        return fleet

    @classmethod
    async def adopt(
        cls,
        endpoint: Endpoint,
        receivers: list[Client],
        users: Sequence[str],
        sender_tokens: Sequence[str],
        *,
        admin_token: str | None = None,
        http_connections: int = 0,
    ) -> Fleet:
        """Use receivers that are already connected (sharing one ``Tally``)."""
        tally = receivers[0].tally if receivers else Tally()
        fleet = cls(endpoint, tally)
        fleet.receivers = receivers
        fleet.users = list(dict.fromkeys(users))
        for client in receivers:
            client.sampled = True
        senders = await connect_many(endpoint, sender_tokens, tally)
        fleet.senders = senders.clients
        if http_connections and admin_token and endpoint.http_url:
            fleet.http = [
                HttpClient(endpoint.http_url, token=admin_token) for _ in range(http_connections)
            ]
        return fleet

    def _pick(self, weights: tuple[list[str], list[str], float] | None) -> str:
        if weights is not None:
            hot, cold, share = weights
            return self.rng.choice(hot if self.rng.random() < share else cold)
        return self.rng.choice(self.users)

    def _failed(self, reply: dict[str, Any] | None) -> bool:
        """Whether a send's answer (``None``: its connection dropped) is a failure."""
        if reply is not None and reply.get("type") != "error":
            return False
        if self.first_error is None and reply is not None:
            self.first_error = reply
        return True

    def _figures(
        self, start: Snapshot, end: Snapshot, base: int, sent: int, acked: int, acks_in_window: int
    ) -> dict[str, Any]:
        """A phase's window (``start`` to ``end``), its sends, acks and deliveries since
        ``base``, and the latencies recorded; called after the drain."""
        result: dict[str, Any] = window(start, end)
        seconds = result["seconds"]
        result.update(
            sent=sent,
            acked=acked,
            acks_per_second=acks_in_window / seconds if seconds else 0.0,
            delivered_after_drain=self.tally.delivered - base,
            latency=latency_summary(self.tally.latencies),
        )
        return result

    async def _drain(self, expected: int, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while self.tally.delivered < expected and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def saturate(
        self, *, via: str, duration: float, depth: int = 8, max_count: int = 1_000_000
    ) -> dict[str, Any]:
        """Closed loop: every sender (WebSocket) or HTTP connection keeps ``depth``
        (HTTP: one) publishes outstanding to random users for ``duration`` seconds."""
        loop = asyncio.get_running_loop()
        pid = self.endpoint.server_pid
        tally = self.tally
        acked = errors = sent = 0
        running = True
        deadline = loop.time() + duration
        base = tally.delivered
        tally.latencies = array("q")
        tally.recording = True
        start = snapshot(pid, tally.delivered)
        if via == "ws":
            if not self.senders:
                return {"error": "no sender connections"}

            def pump(sender: Client) -> None:
                nonlocal sent

                def on_ack(reply: dict[str, Any] | None) -> None:
                    nonlocal acked, errors
                    if self._failed(reply):
                        errors += 1
                    else:
                        acked += 1
                    if running and sent < max_count and not sender.closed:
                        pump(sender)

                sent += 1
                body = payload(sent)
                body["userId"] = self._pick(None)
                sender.action("sendNotification", body, on_ack)

            for sender in self.senders:
                for _ in range(depth):
                    pump(sender)
            while loop.time() < deadline and sent < max_count:
                await asyncio.sleep(0.05)
        elif via == "http":
            if not self.http:
                return {"error": "no HTTP publish API"}

            async def worker(http: HttpClient) -> None:
                nonlocal acked, errors, sent
                while running and loop.time() < deadline and sent < max_count:
                    sent += 1
                    body = payload(sent)
                    body["userId"] = self._pick(None)
                    try:
                        status, _ = await http.post(
                            "/v1/notifications", body, timeout=max(1.0, deadline - loop.time())
                        )
                    except (TimeoutError, OSError):
                        errors += 1
                        return
                    if status == 201:
                        acked += 1
                    else:
                        errors += 1

            await asyncio.gather(*(worker(http) for http in self.http))
        else:
            raise ValueError(f"via must be 'ws' or 'http', not {via!r}")
        end = snapshot(pid, tally.delivered)
        acks_in_window = acked
        running = False
        tally.recording = False
        await self._drain(base + sent * self.copies, self.drain_seconds)
        result = {"via": via, **self._figures(start, end, base, sent, acked, acks_in_window)}
        result["errors"] = errors
        await asyncio.sleep(0.2)
        return result

    async def at_rate(
        self,
        *,
        rate: float,
        duration: float,
        stalled: int = 0,
        stalled_share: float = 0.0,
        rcvbuf: int = 4096,
        rss_every: float = 0.5,
    ) -> dict[str, Any]:
        """Open loop over WebSocket senders: ``rate`` sends a second for ``duration``.

        With ``stalled``, the first ``stalled`` receivers shrink their receive
        buffer to ``rcvbuf`` bytes and stop reading for the whole window, and
        get ``stalled_share`` of the traffic; latency then covers the others
        only, and server RSS is sampled every ``rss_every`` seconds.
        """
        loop = asyncio.get_running_loop()
        pid = self.endpoint.server_pid
        tally = self.tally
        if not self.senders:
            return {"error": "no sender connections"}
        paused = self.receivers[:stalled]
        for client in paused:
            client.shrink_receive_buffer(rcvbuf)
            client.pause()
        hot = [self.users[i] for i in range(min(stalled, len(self.users)))]
        hot_set = set(hot)
        cold = self.users[len(hot) :]
        weights = (hot, cold, stalled_share) if stalled else None
        acked = errors = sent = 0

        def on_ack(reply: dict[str, Any] | None) -> None:
            nonlocal acked, errors
            if self._failed(reply):
                errors += 1
            else:
                acked += 1

        total = int(rate * duration)
        to_stalled = 0
        tally.latencies = array("q")
        base = tally.delivered
        tally.recording = True
        rss: list[tuple[float, int | None]] = [(0.0, rss_now(pid))]
        start = snapshot(pid, tally.delivered)
        began = loop.time()
        next_rss = began + rss_every
        senders = self.senders
        while sent < total:
            now = loop.time()
            if now - began > duration * 1.5:
                break
            due = min(total, int((now - began) * rate))
            while sent < due:
                user = self._pick(weights)
                if stalled and user in hot_set:
                    to_stalled += 1
                body = payload(sent)
                body["userId"] = user
                senders[sent % len(senders)].action("sendNotification", body, on_ack)
                sent += 1
            if now >= next_rss:
                rss.append((round(now - began, 2), rss_now(pid)))
                next_rss += rss_every
            await asyncio.sleep(0.001)
        end = snapshot(pid, tally.delivered)
        acks_in_window = acked
        expected = base + (sent - to_stalled) * self.copies
        await self._drain(expected, self.drain_seconds)
        tally.recording = False
        rss.append((round(loop.time() - began, 2), rss_now(pid)))
        result = {
            "target_rate": rate,
            **self._figures(start, end, base, sent, acked, acks_in_window),
        }
        result.update(errors=errors, missing=max(0, expected - tally.delivered))
        if stalled:
            for client in paused:
                client.resume()
            await asyncio.sleep(1.0)
            result.update(
                stalled=len(paused),
                stalled_share=stalled_share,
                sent_to_stalled=to_stalled,
                stalled_disconnected=sum(client.closed for client in paused),
                others_disconnected=sum(client.closed for client in self.receivers[stalled:]),
                rss_series=rss,
            )
        return result

    async def release(self) -> None:
        """Close the senders and HTTP publishers; the receivers stay open."""
        for http in self.http:
            http.close()
        await close_all(self.senders, settle=0.2)

    async def close(self) -> None:
        await self.release()
        await close_all(self.receivers)


async def personal(
    endpoint: Endpoint,
    receiver_tokens: Sequence[str],
    sender_tokens: Sequence[str],
    *,
    admin_token: str | None = None,
    http_connections: int = 16,
    saturate_seconds: float = 5.0,
    rates: Sequence[float] = (1000, 5000),
    rate_seconds: float = 5.0,
    stalled_fraction: float = 0.01,
    stalled_share: float = 0.1,
    stalled_rate: float = 5000,
    stalled_seconds: float = 8.0,
) -> dict[str, Any]:
    """Workloads 2 and 4 on one set of connections: saturation over WebSocket and
    HTTP, latency at fixed rates, then the same fixed rate with stalled readers."""
    fleet = await Fleet.open(
        endpoint,
        receiver_tokens,
        sender_tokens,
        admin_token=admin_token,
        http_connections=http_connections,
    )
    try:
        return await phases(
            fleet,
            saturate_seconds=saturate_seconds,
            rates=rates,
            rate_seconds=rate_seconds,
            stalled_fraction=stalled_fraction,
            stalled_share=stalled_share,
            stalled_rate=stalled_rate,
            stalled_seconds=stalled_seconds,
        )
    finally:
        await fleet.close()


async def phases(
    fleet: Fleet,
    *,
    saturate_seconds: float = 5.0,
    rates: Sequence[float] = (1000, 5000),
    rate_seconds: float = 5.0,
    stalled_fraction: float = 0.01,
    stalled_share: float = 0.1,
    stalled_rate: float = 5000,
    stalled_seconds: float = 8.0,
    around: Around = no_wrap,
) -> dict[str, Any]:
    """Saturation (WebSocket, then HTTP), fixed rates, then stalled readers; a
    phase with no time is skipped. The fleet stays open. Each phase runs inside
    ``around(name)`` (the harness profiles the server there)."""
    stalled = int(len(fleet.receivers) * stalled_fraction) if stalled_seconds > 0 else 0
    result: dict[str, Any] = {
        "connections": len(fleet.receivers),
        "senders": len(fleet.senders),
        "failed_connections": fleet.connected.failed if fleet.connected else 0,
        "first_error": fleet.connected.first_error if fleet.connected else None,
        "handshakes_per_second": fleet.connected.rate if fleet.connected else None,
    }
    if saturate_seconds > 0:
        async with around("saturate_ws"):
            result["saturate_ws"] = await fleet.saturate(via="ws", duration=saturate_seconds)
        if fleet.http:
            async with around("saturate_http"):
                result["saturate_http"] = await fleet.saturate(
                    via="http", duration=saturate_seconds
                )
    for rate in rates:
        async with around(f"rate_{int(rate)}"):
            result[f"rate_{int(rate)}"] = await fleet.at_rate(rate=rate, duration=rate_seconds)
    if stalled:
        async with around("stalled"):
            result["stalled"] = await fleet.at_rate(
                rate=stalled_rate,
                duration=stalled_seconds,
                stalled=stalled,
                stalled_share=stalled_share,
            )
    return result
