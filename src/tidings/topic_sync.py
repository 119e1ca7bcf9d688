"""Topic delivery for one node's connections: following, catch-up, repair.

A connection follows each topic its user is in (``everyone`` always) through
a cursor per topic, like its personal stream: frames are held while a replay
reads the store, a seq jump waits ``gap_wait`` for the missing frame and then
reads the store, and after a broker outage every followed topic's head is
compared with what was sent. Events about a topic (a sweep) reach each
connected subscriber with their own counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from tidings.core.cursor import StreamCursor
from tidings.core.errors import Unavailable
from tidings.core.inbox import EVERYONE
from tidings.core.models import StreamPage
from tidings.core.protocol import notification_frame
from tidings.hub import Connection, Hub
from tidings.store.base import PAGE_LIMIT, Store

log = logging.getLogger("tidings.node")

COUNTS_CHUNK = 500
"""Users whose counts one read gets, when a topic event goes to many."""
CLOSE_STORE_DOWN = 1011
"""Close code when a connection cannot be synced because the store is down."""


async def drain(conn: Connection) -> None:
    """Wait until the connection's send buffer has room (if it can say)."""
    wait = getattr(conn, "drain", None)
    if wait is not None:
        await wait()


class TopicSync:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        *,
        encode: Callable[[bytes], bytes],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        gap_wait: float,
    ) -> None:
        self.store = store
        self.hub = hub
        self.encode = encode
        self._spawn = spawn
        self.gap_wait = gap_wait
        self._syncing: set[tuple[str, str]] = set()
        """(connection, topic) pairs whose repair is under way."""
        self._loaded: set[str] = set()
        """Connections whose subscriptions are loaded, for their replay to start."""

    def on_gap(self, conn: Connection, topic: str) -> None:
        if (conn.id, topic) not in self._syncing:
            self._spawn(self.sync(conn, topic, wait=self.gap_wait))

    def forget(self, conn: Connection) -> None:
        self._loaded.discard(conn.id)

    def tell(self, topic: str, payload: bytes, conns: list[Connection]) -> None:
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

    async def follow(self, conn: Connection, replaying: bool) -> None:
        """Load the user's subscriptions and deliver those topics to ``conn``."""
        try:
            subscribed = await self.store.subscriptions(conn.user_id)
        except Unavailable as exc:
            log.warning("cannot load subscriptions", extra={"conn": conn.id, "error": str(exc)})
            subscribed = {EVERYONE: 0}
        for topic, from_seq in subscribed.items():
            cursor = conn.topics.get(topic)
            if cursor is None:
                self.hub.subscribe(conn, topic, StreamCursor(syncing=replaying))
            elif cursor.last is not None and cursor.last < from_seq:
                cursor.last = from_seq  # nothing before the subscription is the user's
        for topic in [t for t in conn.topics if t not in subscribed]:
            self.hub.unsubscribe(conn, topic)
        if replaying:
            self._loaded.add(conn.id)

    async def catch_up(
        self, conn: Connection, positions: dict[str, int]
    ) -> tuple[dict[str, int], bool]:
        """Replay each topic given a position; put the others at their head."""
        for _ in range(2000):  # the subscriptions load in a task of their own
            if conn.id in self._loaded or self.hub.get(conn.id) is not conn:
                break
            await asyncio.sleep(0.005)
        self._loaded.discard(conn.id)
        heads: dict[str, int] = {}
        complete = True
        for topic, cursor in list(conn.topics.items()):
            if topic in positions:
                page = await self._read(conn, topic, cursor)
                complete = complete and page.trimmed <= positions[topic]
            else:
                page = await self.store.read_topic(topic, after_seq=2**62, limit=1)
                cursor.skip_to(page.head)
            heads[topic] = page.head
        return heads, complete

    async def _read(self, conn: Connection, topic: str, cursor: StreamCursor) -> StreamPage:
        """Write a topic's stored frames after the cursor, up to its head."""
        while True:
            after = cursor.last if cursor.last is not None else 0
            page = await self.store.read_topic(topic, after_seq=after)
            for item in page.items:
                if cursor.last is None or item.seq > cursor.last:
                    conn.write_frame(self.encode(notification_frame(item)))
                    cursor.delivered(item.seq)
            if len(page.items) < PAGE_LIMIT:
                cursor.skip_to(page.head)
                return page
            await drain(conn)

    def release(self, conn: Connection) -> None:
        """After caughtUp: write held topic frames; repair any topic still behind."""
        for topic, cursor in list(conn.topics.items()):
            frames, more = cursor.drain_held()
            for frame in frames:
                conn.write_frame(frame)
            if more:
                self._spawn(self.sync(conn, topic))

    async def sync(self, conn: Connection, topic: str, *, wait: float = 0) -> None:
        """Gap repair for one topic: wait for the missing frame, else read the store."""
        key = (conn.id, topic)
        self._syncing.add(key)
        try:
            if wait:
                await asyncio.sleep(wait)
            while self.hub.get(conn.id) is conn:
                cursor = conn.topics.get(topic)
                if cursor is None:
                    return
                frames, more = cursor.drain_held()
                for frame in frames:
                    conn.write_frame(frame)
                if not more:
                    return
                await self._read(conn, topic, cursor)
        except Unavailable as exc:
            log.error("topic sync failed", extra={"conn": conn.id, "error": str(exc)})
            conn.close(CLOSE_STORE_DOWN, "store unavailable; reconnect with since")
        except Exception:
            log.exception("topic sync failed", extra={"conn": conn.id, "topic": topic})
            conn.close(CLOSE_STORE_DOWN, "internal error; reconnect with since")
        finally:
            self._syncing.discard(key)

    async def repair_all(self) -> None:
        """The same for topics: one head read per topic followed here, then a store
        read for each connection whose cursor is behind it."""
        for topic in {topic for conn in self.hub for topic in conn.topics}:
            try:
                page = await self.store.read_topic(topic, after_seq=2**62, limit=1)
            except Unavailable as exc:
                log.error("topic repair failed", extra={"topic": topic, "error": str(exc)})
                return
            for conn in self.hub:
                cursor = conn.topics.get(topic)
                if cursor is not None and cursor.last is not None and page.head > cursor.last:
                    self._spawn(self._repair(conn, topic))

    async def _repair(self, conn: Connection, topic: str) -> None:
        key = (conn.id, topic)
        cursor = conn.topics.get(topic)
        if key in self._syncing or cursor is None:
            return  # a gap repair under way reads the store anyway
        self._syncing.add(key)
        try:
            cursor.syncing = True
            await self._read(conn, topic, cursor)
            frames, more = cursor.drain_held()
            for frame in frames:
                conn.write_frame(frame)
        except Unavailable as exc:
            log.error("topic repair failed", extra={"conn": conn.id, "error": str(exc)})
            more = False
        finally:
            self._syncing.discard(key)
        if more:
            self._spawn(self.sync(conn, topic))
