"""The soak's mixed traffic on the load generator's clients.

Devices are long-lived subscribers that reconnect with ``since`` (and
``topics=everyone:<seq>``) whenever their connection ends: pushed off by
churn, dropped as a slow consumer, or refused. Publishers: WebSocket
``sendNotification`` senders and HTTP publishes to one or two users, and
HTTP broadcasts to the ``everyone`` topic. Every loop holds a rate and stops
at ``stop()``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from array import array
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from bench.soak_ledger import Ledger, Stream
from tidings.loadtest.httpclient import HttpPool
from tidings.loadtest.wire import payload
from tidings.loadtest.wsclient import Client, Endpoint, Tally, connect

TOPIC = "everyone"
BIG = "s" * 30_000
"""The message of a slow consumer's burst (32,768 characters at most): about 150
fill the kernel's buffers (the server's socket buffer on loopback grows to
4 MiB) and then the server's limit."""


class Device:
    """One user's device, across its connections: what it got, in which state."""

    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token
        self.streams: dict[str, Stream] = {user: Stream(), f"#{TOPIC}": Stream()}
        self.conn: Client | None = None
        self.connecting = False
        self.live = False
        """Caught up on its current connection: frames now are live pushes."""
        self.slow = False
        """In a slow-consumer episode: not reading, not reconnected, not timed."""
        self.offline_until = 0.0
        self.connects = 0
        self.replayed = 0

    @property
    def online(self) -> bool:
        return self.conn is not None and not self.conn.closed


class Traffic:
    """The devices, the publishers and the figures they feed."""

    def __init__(self, endpoint: Endpoint, admin_token: str, log: Callable[[], str]) -> None:
        self.endpoint = endpoint
        self.log = log
        """The server's log so far (slow-consumer drops are read from it)."""
        self.tally = Tally()
        self.ledger = Ledger()
        self.http = HttpPool(endpoint.http_url or "", token=admin_token, size=8)
        self.devices: list[Device] = []
        self.senders: list[Client] = []
        self.sender_tokens: list[str] = []
        self.rng = random.Random(14)
        self.latencies: array[int] = array("q")
        """Publish-to-delivery nanoseconds of live frames since the last sample."""
        self.events: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[str] = collections.Counter()
        self.episodes: list[dict[str, Any]] = []
        self.first_error: str | None = None
        self.pending = 0
        """Publishes sent and not yet answered."""
        self.running = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self._episodes: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(50)

    # -- devices -------------------------------------------------------------

    def _frames(self, device: Device) -> tuple[Callable[[dict[str, Any]], None], ...]:
        def notified(body: dict[str, Any]) -> None:
            topic = body.get("topic")
            device.streams[f"#{topic}" if topic else device.user].saw(body["seq"])
            if not device.live:
                device.replayed += 1
            elif not device.slow:
                self.latencies.append(time.monotonic_ns() - body["data"]["ts"])

        def event(body: dict[str, Any]) -> None:
            if body.get("type") == "caughtUp":
                device.live = True

        return notified, event

    async def connect(self, device: Device) -> None:
        """(Re)connect from where the device's streams stop; a failure is retried later."""
        device.connecting = True
        device.live = False
        notified, event = self._frames(device)
        since = device.streams[device.user].high
        topics = f"{TOPIC}:{device.streams[f'#{TOPIC}'].high}"
        try:
            async with self._slots:
                device.conn = await connect(
                    self.endpoint,
                    device.token,
                    self.tally,
                    sampled=True,
                    since=since,
                    topics=topics,
                    on_json=event,
                    on_notification=notified,
                )
            device.connects += 1
            self.events["connects"] += 1
        except Exception as exc:
            self.events["connect_errors"] += 1
            self.first_error = self.first_error or f"connect: {type(exc).__name__}: {exc}"
            device.offline_until = time.monotonic() + 1.0
        finally:
            device.connecting = False

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], into: set[asyncio.Task[Any]] | None = None
    ) -> None:
        tasks = self._tasks if into is None else into
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def keep_connected(self) -> None:
        """Reconnect every device whose connection ended, once its time offline is over."""
        while True:
            now = time.monotonic()
            for device in self.devices:
                if device.online or device.connecting or device.slow:
                    continue
                if device.conn is not None:
                    code = device.conn.close_code
                    self.close_codes[str(code) if code is not None else "no close frame"] += 1
                    device.conn = None
                if now >= device.offline_until:
                    device.connecting = True
                    self._spawn(self.connect(device))
            for index, sender in enumerate(self.senders):
                if sender.closed:
                    self.events["sender_reconnects"] += 1
                    with contextlib.suppress(Exception):
                        token = self.sender_tokens[index]
                        self.senders[index] = await connect(self.endpoint, token, Tally())
            await asyncio.sleep(0.1)

    # -- publishers ----------------------------------------------------------

    def _answered(self, pairs: list[tuple[str, int]] | None, why: Any = None) -> None:
        self.pending -= 1
        if pairs is None:
            self.events["publish_errors"] += 1
            self.first_error = self.first_error or f"publish: {why!r}"[:300]
        else:
            self.ledger.ack(pairs)
            self.events["acked"] += 1

    def send_ws(self, index: int) -> None:
        """One ``sendNotification`` to a random user, over a sender's WebSocket."""
        sender = self.senders[index % len(self.senders)]
        user = self.rng.choice(self.devices).user
        self.pending += 1

        def on_ack(reply: dict[str, Any] | None) -> None:
            ok = reply is not None and reply.get("type") == "ack"
            self._answered([(user, reply["seq"])] if ok and reply else None, reply)

        sender.action("sendNotification", {**payload(index), "userId": user}, on_ack)

    async def publish(self, body: dict[str, Any]) -> None:
        """One HTTP publish; its answer's seqs go in the ledger."""
        self.pending += 1
        try:
            status, raw = await self.http.post("/v1/notifications", body, timeout=30.0)
        except (TimeoutError, OSError) as exc:
            self._answered(None, exc)
            return
        if status != 201:
            self._answered(None, (status, raw[:200]))
            return
        answer = orjson.loads(raw)
        pairs = [(r["userId"], r["seq"]) for r in answer["recipients"]]
        if answer.get("topic"):
            pairs.append((f"#{answer['topic']}", answer["seq"]))
        self._answered(pairs)

    def send_http(self, index: int) -> None:
        """A publish to one user, or (one in four) to two users at once."""
        users = {self.rng.choice(self.devices).user for _ in range(2 if index % 4 == 0 else 1)}
        self._spawn(self.publish({**payload(index), "userIds": sorted(users)}))

    def broadcast(self, index: int) -> None:
        self._spawn(self.publish({**payload(index), "topic": TOPIC}))

    def _live_device(self) -> Device | None:
        """A random device that is connected, caught up and reading, if one of five is."""
        picked = self.rng.sample(self.devices, min(5, len(self.devices)))
        return next((d for d in picked if d.online and d.live and not d.slow), None)

    def churn(self, index: int) -> None:
        """Drop one live device; it comes back with ``since`` after 0.2 to 3 s."""
        device = self._live_device()
        if device is not None and device.conn is not None:
            device.offline_until = time.monotonic() + self.rng.uniform(0.2, 3.0)
            device.live = False
            device.conn.close()
            device.conn = None
            self.events["churned"] += 1

    def slow_consumer(self, index: int) -> None:
        device = self._live_device()
        if device is not None:
            self._spawn(self.slow_episode(device), self._episodes)

    async def slow_episode(self, device: Device, *, most: int = 400) -> None:
        """Stop reading, burst big notifications at the device until the server
        logs its drop, read again: it must see the 1008 close, and its
        reconnect with ``since`` must bring back everything."""
        conn = device.conn
        if conn is None:
            return
        device.slow = True
        mark = f'"user":"{device.user}"'
        before = self._drops(mark)
        conn.pause()
        sent = 0
        began = time.monotonic()
        try:
            while self._drops(mark) == before and sent < most:
                body = {**payload(sent), "message": BIG, "userId": device.user}
                await asyncio.gather(*(self.publish(body) for _ in range(8)))
                sent += 8
                await asyncio.sleep(0.05)
            dropped = self._drops(mark) > before
            await asyncio.sleep(1.0)
            conn.resume()
            deadline = time.monotonic() + (20.0 if dropped else 3.0)
            while not conn.closed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            conn.resume()
            conn.close()
            device.slow = False
        self.episodes.append(
            {
                "user": device.user,
                "burst": sent,
                "dropped_by_server": dropped,
                "close_code": conn.close_code,
                "seconds": round(time.monotonic() - began, 2),
            }
        )

    def _drops(self, mark: str) -> int:
        return sum(
            1
            for line in self.log().splitlines()
            if "slow consumer disconnected" in line and mark in line
        )

    async def paced(self, rate: float, step: Callable[[int], None]) -> None:
        """Call ``step(i)`` ``rate`` times a second until ``stop()``."""
        if rate <= 0:
            return
        began = time.monotonic()
        done = 0
        while self.running:
            due = int((time.monotonic() - began) * rate)
            while done < due and self.running:
                step(done)
                done += 1
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self.running = False

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait for the slow episodes still running and the publishes in flight."""
        if self._episodes:
            await asyncio.wait(set(self._episodes), timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.pending > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in list(self._tasks | self._episodes):
            task.cancel()
        self.http.close()
        for client in self.senders + [d.conn for d in self.devices if d.conn is not None]:
            client.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.3)
