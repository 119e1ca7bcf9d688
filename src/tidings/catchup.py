"""Catch-up: bring each of a connection's streams (its personal stream and
every topic it follows) up to the store, with no gap and no duplicate.

The rule is centrifuge's recovery: the connection joins the hub first, so
live frames meet cursors that hold them while history is read; then the
held frames that follow on are written and the cursor is live again. One
page loop (``_replay``) serves every stream. The same loop repairs a gap (a
seq jump waits ``gap_wait`` for the missing frame, then reads the store) and
the aftermath of a broker outage (every followed stream's head compared with
what was sent). Every cursor a connection has is built here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from tidings.core.cursor import StreamCursor
from tidings.core.errors import Unavailable
from tidings.core.inbox import EVERYONE
from tidings.core.models import StreamPage
from tidings.core.protocol import caught_up_frame, notification_frame
from tidings.hub import Connection, Hub
from tidings.store.base import PAGE_LIMIT, Store

log = logging.getLogger("tidings.node")

CLOSE_STORE_DOWN = 1011
"""Close code when a connection cannot be caught up (the store is down, or a
read failed): the client reconnects with ``since`` and loses nothing."""

HEAD = 2**62
"""``after_seq`` that reads no item, only a stream's head."""

ReadPage = Callable[[int], Awaitable[StreamPage]]
"""Reads the page of a stream after a seq."""


class CatchUp:
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
        self._syncing: set[tuple[str, str | None]] = set()
        """(connection, topic or None for the personal stream) being synced."""
        self._stale: set[str] = set()
        """Connections whose running personal sync must read once more (a
        broker outage ended while it ran)."""
        self._loaded: set[str] = set()
        """Connections whose subscriptions are loaded, for their replay to start."""
        self.replays = 0
        """Connections that asked for a replay (``since``) since start (for metrics)."""
        self.replayed = 0
        """Notifications written from the store: replays and repairs alike."""
        self.gap_repairs = 0
        """Repairs started by a seq jump (a frame the broker lost or delayed)."""
        self.outage_repairs = 0
        """Streams found behind the store after a broker outage, and synced."""
        self.failures = 0
        """Connections closed (1011) because their streams could not be caught up."""

    # -- a new connection ------------------------------------------------------

    def prepare(self, conn: Connection, since: int | None, topics: Mapping[str, int]) -> None:
        """Give a connection about to join the hub its cursors: with ``since``
        they hold live frames until the replay is written."""
        replaying = since is not None
        conn.cursor = StreamCursor(since, syncing=replaying)
        conn.topics = {EVERYONE: StreamCursor(syncing=replaying)}
        for topic, seq in topics.items():
            conn.topics[topic] = StreamCursor(seq, syncing=True)

    def start(
        self,
        conn: Connection,
        since: int | None,
        topics: Mapping[str, int],
        *,
        broker_up: bool,
    ) -> None:
        """The connection is in the hub: follow its topics, replay if asked."""
        self._spawn(self._follow(conn, replaying=since is not None))
        if since is not None:
            self.replays += 1
            self._spawn(self.sync(conn, since=since, topics=dict(topics)))
        elif not broker_up:
            self._spawn(self.set_baselines([conn]))

    def forget(self, conn: Connection) -> None:
        self._loaded.discard(conn.id)

    async def _follow(self, conn: Connection, *, replaying: bool) -> None:
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

    # -- the personal stream -----------------------------------------------------

    def on_gap(self, conn: Connection, topic: str | None) -> None:
        if (conn.id, topic) in self._syncing:
            return
        self.gap_repairs += 1
        if topic is None:
            self._spawn(self.sync(conn, wait=self.gap_wait))
        else:
            self._spawn(self.sync_topic(conn, topic, wait=self.gap_wait))

    async def sync(
        self,
        conn: Connection,
        *,
        since: int | None = None,
        wait: float = 0,
        topics: dict[str, int] | None = None,
    ) -> None:
        """Bring the personal stream up to the store's head, then release held frames.

        With ``since`` this is the connect-time replay: the topics given a
        position follow, then the ``caughtUp`` frame. Without it, a gap
        repair, which first waits ``wait`` seconds for the missing frame.
        """
        key = (conn.id, None)
        self._syncing.add(key)
        cursor = conn.cursor
        try:
            if wait:
                await asyncio.sleep(wait)
                if not self._release(conn, cursor) and not self._reread(conn):
                    return
            while self.hub.get(conn.id) is conn:
                page, first_trimmed = await self._replay(conn, cursor, self._personal(conn))
                if since is not None:
                    heads, topics_complete = await self._catch_up_topics(conn, topics or {})
                    complete = topics_complete and first_trimmed <= since
                    frame = caught_up_frame(page.head, complete=complete, topics=heads)
                    conn.write_frame(self.encode(frame))
                    since = None
                    self._release_topics(conn)
                if not self._release(conn, cursor) and not self._reread(conn):
                    return
        except Exception as exc:
            self._give_up(conn, exc)
        finally:
            self._syncing.discard(key)
            self._stale.discard(conn.id)

    def _personal(self, conn: Connection) -> ReadPage:
        def read(after: int) -> Awaitable[StreamPage]:
            return self.store.read_stream(conn.user_id, after_seq=after)

        return read

    def _reread(self, conn: Connection) -> bool:
        """Whether a repair asked this sync for one more read, started after its call."""
        if conn.id not in self._stale:
            return False
        self._stale.discard(conn.id)
        conn.cursor.syncing = True
        return True

    async def set_baselines(self, conns: list[Connection]) -> None:
        """A live-only connection starts from its first push, which a broker outage
        may lose: start those that have had none from the stream's head instead."""
        waiting = [conn for conn in conns if conn.cursor.last is None]
        if not waiting:
            return
        try:
            heads = await self.store.heads(list({conn.user_id for conn in waiting}))
        except Unavailable as exc:
            log.warning("cannot read stream heads", extra={"error": str(exc)})
            return
        for conn in waiting:
            if conn.cursor.last is None:
                conn.cursor.last = heads.get(conn.user_id, 0)

    # -- topics ------------------------------------------------------------------

    async def _catch_up_topics(
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
                page, _ = await self._replay(conn, cursor, self._topic(topic))
                complete = complete and page.trimmed <= positions[topic]
            else:
                page = await self.store.read_topic(topic, after_seq=HEAD, limit=1)
                cursor.skip_to(page.head)
            heads[topic] = page.head
        return heads, complete

    def _topic(self, topic: str) -> ReadPage:
        def read(after: int) -> Awaitable[StreamPage]:
            return self.store.read_topic(topic, after_seq=after)

        return read

    def _release_topics(self, conn: Connection) -> None:
        """After caughtUp: write held topic frames; repair any topic still behind."""
        for topic, cursor in list(conn.topics.items()):
            if self._release(conn, cursor):
                self._spawn(self.sync_topic(conn, topic))

    async def sync_topic(self, conn: Connection, topic: str, *, wait: float = 0) -> None:
        """Gap repair for one topic: wait for the missing frame, else read the store."""
        key = (conn.id, topic)
        self._syncing.add(key)
        try:
            if wait:
                await asyncio.sleep(wait)
            while self.hub.get(conn.id) is conn:
                cursor = conn.topics.get(topic)
                if cursor is None or not self._release(conn, cursor):
                    return
                await self._replay(conn, cursor, self._topic(topic))
        except Exception as exc:
            self._give_up(conn, exc)
        finally:
            self._syncing.discard(key)

    # -- after a broker outage ---------------------------------------------------

    async def repair_all(self) -> None:
        """Compare every local stream's head with what its connections were sent,
        in batched reads, and sync those behind."""
        users = self.hub.users()
        for start in range(0, len(users), 1000):
            chunk = users[start : start + 1000]
            try:
                heads = await self.store.heads(chunk)
            except Unavailable as exc:
                log.error("repair failed", extra={"users": len(chunk), "error": str(exc)})
                return
            for user in chunk:
                for conn in self.hub.of_user(user):
                    last = conn.cursor.last
                    if last is None or heads.get(user, 0) <= last:
                        continue
                    if (conn.id, None) in self._syncing:
                        self._stale.add(conn.id)
                    else:
                        self.outage_repairs += 1
                        conn.cursor.syncing = True
                        self._spawn(self.sync(conn))
        for topic in {topic for conn in self.hub for topic in conn.topics}:
            try:
                page = await self.store.read_topic(topic, after_seq=HEAD, limit=1)
            except Unavailable as exc:
                log.error("topic repair failed", extra={"topic": topic, "error": str(exc)})
                return
            for conn in self.hub:
                cursor = conn.topics.get(topic)
                if cursor is not None and cursor.last is not None and page.head > cursor.last:
                    self.outage_repairs += 1
                    self._spawn(self._repair_topic(conn, topic))

    async def _repair_topic(self, conn: Connection, topic: str) -> None:
        key = (conn.id, topic)
        cursor = conn.topics.get(topic)
        if key in self._syncing or cursor is None:
            return  # a gap repair under way reads the store anyway
        self._syncing.add(key)
        more = False
        try:
            cursor.syncing = True
            await self._replay(conn, cursor, self._topic(topic))
            more = self._release(conn, cursor)
        except Unavailable as exc:
            log.error("topic repair failed", extra={"conn": conn.id, "error": str(exc)})
        finally:
            self._syncing.discard(key)
        if more:
            self._spawn(self.sync_topic(conn, topic))

    # -- the one page loop -------------------------------------------------------

    async def _replay(
        self, conn: Connection, cursor: StreamCursor, read: ReadPage
    ) -> tuple[StreamPage, int]:
        """Write a stream's stored frames after the cursor, up to its head.
        Returns the last page read and what retention had cut at the first."""
        first_trimmed: int | None = None
        while True:
            page = await read(cursor.last if cursor.last is not None else 0)
            if first_trimmed is None:
                first_trimmed = page.trimmed
            written = 0
            for item in page.items:
                if cursor.last is None or item.seq > cursor.last:
                    conn.write_frame(self.encode(notification_frame(item)))
                    cursor.delivered(item.seq)
                    written += 1
            self.replayed += written
            if len(page.items) < PAGE_LIMIT:
                cursor.skip_to(page.head)
                return page, first_trimmed
            await conn.drain()

    @staticmethod
    def _release(conn: Connection, cursor: StreamCursor) -> bool:
        """Write the held frames that follow on; whether the stream is still behind."""
        frames, more = cursor.drain_held()
        for frame in frames:
            conn.write_frame(frame)
        return more

    def _give_up(self, conn: Connection, exc: Exception) -> None:
        """Never leave a connection syncing for good (it would receive nothing):
        close it, and the client resumes with ``since``."""
        self.failures += 1
        if isinstance(exc, Unavailable):
            log.error(
                "sync failed, closing connection",
                extra={"conn": conn.id, "user": conn.user_id, "error": str(exc)},
            )
            conn.close(CLOSE_STORE_DOWN, "store unavailable; reconnect with since")
        else:
            log.error("sync failed, closing connection", extra={"conn": conn.id}, exc_info=exc)
            conn.close(CLOSE_STORE_DOWN, "internal error; reconnect with since")
