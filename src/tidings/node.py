"""The node: wires store, broker and hub into the publish path.

Publish: store (group commit; seq assigned in the transaction) -> broker ->
every node's hub -> sockets. The ack is sent after the commit and the push.
A new connection joins the hub and ``catchup`` brings its streams up to the
store; inbox changes, subscriptions and the sweeper's removals travel the
same way as notifications, as events outside the stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import orjson

from tidings.broker.base import Broker
from tidings.catchup import CatchUp
from tidings.core.errors import BadRequest, Forbidden, Unavailable
from tidings.core.histogram import LATENCY_BUCKETS, Histogram
from tidings.core.inbox import EVERYONE, Mark, check_topic
from tidings.core.models import (
    Counts,
    JSONObject,
    Publication,
    PublishResult,
)
from tidings.core.protocol import SendNotification, notification_frame
from tidings.core.publish import DEFAULT_LIMITS, Limits, check_text, new_request
from tidings.core.revocation import CHANNEL as REVOCATIONS
from tidings.core.tokens import Identity
from tidings.hub import Connection, Hub
from tidings.store.base import Expired, Store
from tidings.store.waiting import open_store_waiting

log = logging.getLogger("tidings.node")

PRUNE_EVERY = 60.0
"""Seconds between sweeps of expired idempotency keys."""

COUNTS_CHUNK = 500
"""Users whose counts one read gets, when a topic event goes to many."""

MAX_UNSENT = 100_000
"""Streams whose latest publication a node keeps through a broker outage."""


class Node:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        encode: Callable[[bytes], bytes],
        user_send: str = "any",
        gap_wait: float = 0.05,
        default_ttl: float = 0,
        limits: Limits = DEFAULT_LIMITS,
        max_stored_per_user: int = 0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.encode = encode
        """Wraps an encoded frame for the transport (a WebSocket text frame)."""
        self.hub = Hub(
            encode=encode,
            on_gap=lambda conn, topic: self.catchup.on_gap(conn, topic),
            on_topic_event=self._on_topic_event,
        )
        self.on_revocation: Callable[[bytes], None] | None = None
        """Given each revocation a node published (``web/revocation.py`` registers)."""
        self.catchup = CatchUp(store, self.hub, encode=encode, spawn=self._spawn, gap_wait=gap_wait)
        self.user_send = user_send
        self.default_ttl_ms = int(default_ttl * 1000)
        """Lifetime of a notification published without ``expiresAt``; 0: forever."""
        self.limits = limits
        self.max_stored = max_stored_per_user
        """Each user's stream keeps its newest this many notifications; 0: all."""
        self._trim_every = max(1, max_stored_per_user // 100)
        self._over_cap: set[str] = set()
        """Users whose stream may hold more than ``max_stored``: the sweeper trims them."""
        self.draining = False
        self.broker_up = True
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.node_id = secrets.token_urlsafe(6)
        """Names this node among its peers; every connection id starts with it."""
        self._unsent: dict[tuple[str, str | None], Publication] = {}
        """Per user (or topic), the latest publication the broker could not send; sent
        when it is back."""
        self._unsent_full = False
        self.published = {"personal": 0, "list": 0, "topic": 0}
        """Publish requests stored, by kind: one user, several users, a topic (for
        metrics). A repeat of an idempotency key is not one of them."""
        self.repeats = 0
        """Publish requests answered with the first result of their idempotency key."""
        self.publish_latency = Histogram(LATENCY_BUCKETS)
        """Seconds from a publish call to committed and pushed to this node's
        connections: what the sender waits for its ack or HTTP answer."""
        self.broker_failures = 0
        """Broker publishes that failed (``Unavailable``); what they carried is stored."""

    async def start(self, *, store_wait: float = 0) -> None:
        """Open the store (waiting up to ``store_wait`` seconds for a server that
        does not answer yet), then the broker."""
        await open_store_waiting(self.store, wait=store_wait)
        await self.broker.start(self.hub.deliver, self._on_broker_state)

    async def stop(self) -> None:
        """Wait for in-flight publishes, then close broker and store."""
        await self.wait_idle()
        for task in list(self._tasks):
            task.cancel()
        await self.broker.stop()
        await self.store.close()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def new_connection_id(self) -> str:
        return self.node_id + secrets.token_urlsafe(9)

    # -- publish -------------------------------------------------------------

    async def send(self, sender: Identity, action: SendNotification) -> PublishResult:
        """The WebSocket ``sendNotification`` action, with the sender from the token."""
        if not sender.admin:
            if self.user_send == "none":
                raise Forbidden("this server does not let users send notifications")
            if self.user_send == "self" and action.user_id != sender.user_id:
                raise Forbidden(
                    "this server lets users send notifications only to themselves "
                    "(--user-send any lets them send to anyone)"
                )
        return await self.publish(
            [action.user_id],
            action.message,
            data=action.data,
            sender=sender.user_id,
            idempotency_key=action.idempotency_key,
            tags=action.tags,
        )

    async def publish(
        self,
        recipients: Sequence[str],
        message: str,
        *,
        data: JSONObject | None = None,
        sender: str | None = None,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
        expires_at: int | None = None,
        topic: str | None = None,
    ) -> PublishResult:
        """Store for every recipient in one transaction (or once in ``topic``'s
        stream), then push; returns after both."""
        started = time.perf_counter()
        request = new_request(
            recipients,
            message,
            now_ms=time.time_ns() // 1_000_000,
            data=data,
            sender=sender,
            idempotency_key=idempotency_key,
            tags=tags,
            expires_at=expires_at,
            topic=topic,
            default_ttl_ms=self.default_ttl_ms,
            limits=self.limits,
        )
        self._inflight += 1
        self._idle.clear()
        try:
            result = await self.store.append(request)
            if result.stored:
                if self.max_stored:
                    self._note_over_cap(result)
                try:
                    await self._push(result)
                except Exception:
                    # Committed: the answer must say so. Connections that miss
                    # the push find the gap at their next frame or reconnect.
                    log.exception("push after commit failed", extra={"id": result.id})
                kind = (
                    "topic" if topic is not None else "list" if len(result.seqs) > 1 else "personal"
                )
                self.published[kind] += 1
                self.publish_latency.observe(time.perf_counter() - started)
            elif result.duplicate:
                self.repeats += 1
            return result
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    def _note_over_cap(self, result: PublishResult) -> None:
        """Every ``_trim_every`` seqs past the cap, a stream is due a trim: it
        holds at most 1% more than ``max_stored`` between sweeps."""
        for user, seq in result.seqs:
            if seq > self.max_stored and seq % self._trim_every == 0:
                self._over_cap.add(user)

    async def _push(self, result: PublishResult) -> None:
        publications = [
            Publication(n.user_id, n.seq, notification_frame(n), topic=n.topic)
            for n in result.stored
        ]
        try:
            await self.broker.publish(publications)
        except Unavailable as exc:
            self.broker_failures += 1
            # Stored already. This node's sockets get it now; other nodes' get the
            # latest per user when the broker is back, and a gap repair fills in.
            log.warning("broker publish failed", extra={"error": str(exc)})
            for publication in publications:
                self.hub.deliver(publication)
                self._keep_unsent(publication)
        else:
            if self._unsent:
                self._spawn(self._resend())

    def _keep_unsent(self, publication: Publication) -> None:
        """Remember the latest publication per stream for when the broker is back.

        Bounded: past ``MAX_UNSENT`` streams, new ones are not remembered. Their
        frames are stored all the same; another node's connection finds the
        jump at its next frame (or its own repair after the outage) and reads
        the store. Only how soon it notices depends on this.
        """
        key = (publication.user_id, publication.topic)
        if key in self._unsent or len(self._unsent) < MAX_UNSENT:
            self._unsent[key] = publication
        elif not self._unsent_full:
            self._unsent_full = True
            log.warning("unsent publications at their cap", extra={"count": MAX_UNSENT})

    async def _resend(self) -> None:
        unsent, self._unsent = self._unsent, {}
        self._unsent_full = False
        try:
            await self.broker.publish(list(unsent.values()))
        except Unavailable:
            self.broker_failures += 1
            for publication in unsent.values():  # older than what came meanwhile
                self._unsent.setdefault((publication.user_id, publication.topic), publication)

    # -- inbox changes -------------------------------------------------------

    async def mark(self, user_id: str, mark: Mark) -> tuple[list[str], Counts]:
        """Apply a read/seen/archive change and push it, with the new counts, to
        every connection of the user on every node."""
        changed, counts = await self.store.mark(user_id, mark)
        if changed:
            change = mark.change() if mark.up_to is not None else {**mark.change(), "ids": changed}
            await self._push_inbox(user_id, change, counts)
        return changed, counts

    async def delete(self, user_id: str, ids: Sequence[str]) -> tuple[list[str], Counts]:
        deleted, counts = await self.store.delete(user_id, ids)
        if deleted:
            await self._push_inbox(user_id, {"action": "delete", "ids": deleted}, counts)
        return deleted, counts

    async def _push_inbox(self, user_id: str, change: JSONObject, counts: Counts) -> None:
        payload = orjson.dumps({"type": "inbox", "change": change, **counts.to_json()})
        await self._publish_events([Publication(user_id, 0, payload)])

    async def sweep(self) -> int:
        """Delete what has expired and tell the owners' connections; returns how many."""
        removed = 0
        while True:
            swept = await self.store.expire(now_ms=time.time_ns() // 1_000_000)
            for expired in swept:
                removed += len(expired.ids)
                await self._announce(expired)
            if sum(len(e.ids) for e in swept) < 5000:
                return removed + await self._trim()

    async def _trim(self) -> int:
        """Cap the streams noted over it; tell their owners as an expiry."""
        removed = 0
        while self._over_cap:
            users, limit = sorted(self._over_cap)[:500], 5000
            self._over_cap.difference_update(users)
            try:
                swept = await self.store.trim(
                    users, keep=self.max_stored, now_ms=time.time_ns() // 1_000_000, limit=limit
                )
            except Unavailable:
                self._over_cap.update(users)
                raise
            for trimmed in swept:
                removed += len(trimmed.ids)
                if len(trimmed.ids) >= limit:
                    self._over_cap.add(trimmed.user_id)
                await self._announce(trimmed)
        return removed

    async def _announce(self, expired: Expired) -> None:
        """Tell the owner's connections (or a topic's subscribers) what went."""
        change = {"action": "expire", "ids": list(expired.ids)}
        if expired.topic is not None or expired.counts is None:
            await self._push_topic_event(expired.topic or EVERYONE, change)
        else:
            await self._push_inbox(expired.user_id, change, expired.counts)

    async def run_sweeper(self, interval: float) -> None:
        """Every ``interval`` seconds: expire notifications and old idempotency keys."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.sweep()
                if time.monotonic() - last_prune > PRUNE_EVERY:
                    await self.store.prune(now_ms=time.time_ns() // 1_000_000)
                    last_prune = time.monotonic()
            except Unavailable as exc:
                log.warning("sweep failed", extra={"error": str(exc)})
            else:
                if removed:
                    log.info("expired notifications removed", extra={"count": removed})

    # -- topics --------------------------------------------------------------

    async def subscribe(self, user_ids: Sequence[str], topic: str) -> dict[str, int]:
        """Subscribe users (from the topic's head on) and tell every node, so their
        connections everywhere start receiving it. Returns each user's start seq."""
        if check_topic(topic) == EVERYONE:
            raise BadRequest("every user is always in 'everyone'")
        for user_id in user_ids:
            check_text(user_id, "userId")
        starts = await self.store.subscribe(user_ids, topic)
        await self._publish_events(
            [
                self._subscription(user, topic, subscribed=True, seq=seq)
                for user, seq in starts.items()
            ]
        )
        return starts

    async def unsubscribe(self, user_id: str, topic: str) -> bool:
        if check_topic(topic) == EVERYONE:
            raise BadRequest("every user is always in 'everyone'")
        gone = await self.store.unsubscribe(user_id, topic)
        if gone:
            await self._publish_events(
                [self._subscription(user_id, topic, subscribed=False, seq=0)]
            )
        return gone

    @staticmethod
    def _subscription(user_id: str, topic: str, *, subscribed: bool, seq: int) -> Publication:
        payload = orjson.dumps(
            {"type": "subscription", "topic": topic, "subscribed": subscribed, "seq": seq}
        )
        return Publication(user_id, 0, payload, topic=topic)

    async def _push_topic_event(self, topic: str, change: JSONObject) -> None:
        payload = orjson.dumps({"type": "inbox", "topic": topic, "change": change})
        await self._publish_events([Publication("", 0, payload, topic=topic)])

    def _on_topic_event(self, topic: str, payload: bytes, conns: list[Connection]) -> None:
        if topic == REVOCATIONS:
            if self.on_revocation is not None:
                self.on_revocation(payload)
            return
        if conns:
            self._spawn(self._tell_each(payload, conns))

    async def _tell_each(self, payload: bytes, conns: list[Connection]) -> None:
        """Give each connected subscriber a topic event with their own counts
        (read for all of them at once, a chunk at a time); without the store,
        the event alone, which tells a client to read its counts again."""
        by_user: dict[str, list[Connection]] = {}
        for conn in conns:
            by_user.setdefault(conn.user_id, []).append(conn)
        event = orjson.loads(payload)
        users = list(by_user)
        for start in range(0, len(users), COUNTS_CHUNK):
            chunk = users[start : start + COUNTS_CHUNK]
            try:
                counts = await self.store.counts_many(chunk)
            except Unavailable as exc:
                log.warning("cannot read counts", extra={"error": str(exc)})
                counts = {}
            for user in chunk:
                found = counts.get(user)
                own = orjson.dumps({**event, **found.to_json()}) if found else payload
                self.hub.write(by_user[user], own)

    async def _publish_events(self, publications: list[Publication]) -> None:
        try:
            await self.broker.publish(publications)
        except Unavailable as exc:
            self.broker_failures += 1
            for publication in publications:  # this node's connections at least
                self.hub.deliver(publication)
            log.warning("broker publish failed", extra={"error": str(exc)})

    # -- connections ---------------------------------------------------------

    def attach(
        self, conn: Connection, since: int | None, topics: Mapping[str, int] | None = None
    ) -> None:
        """Register a new connection; with ``since``, replay then announce caughtUp.

        ``topics`` (with ``since``) gives the position to resume each topic from;
        the user's other topics go live from the ``caughtUp`` frame on.
        """
        self.catchup.prepare(conn, since, topics or {})
        self.hub.add(conn)
        self.catchup.start(conn, since, topics or {}, broker_up=self.broker_up)

    def detach(self, conn: Connection) -> None:
        self.hub.remove(conn)
        self.catchup.forget(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _on_broker_state(self, up: bool) -> None:
        self.broker_up = up
        if up:
            self._spawn(self.repair_all())
            self._spawn(self._resend())
        else:
            self._spawn(self.catchup.set_baselines(list(self.hub)))

    async def repair_all(self) -> None:
        """After a broker outage: sync every local stream that is behind the store."""
        await self.catchup.repair_all()
