"""The node: wires store, broker and hub into the publish and catch-up paths.

Publish: store (group commit; seq assigned in the transaction) -> broker ->
every node's hub -> sockets. The ack is sent after the commit and the push.
Catch-up: a connection with ``since`` joins the hub first (live frames are
held by its cursor), then reads the store, then releases what was held, so
nothing falls between the replay and the live stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson

from tidings.broker.base import Broker
from tidings.core.errors import BadRequest, Forbidden, Unavailable
from tidings.core.ids import new_id
from tidings.core.models import JSONObject, Publication, PublishRequest, PublishResult
from tidings.core.protocol import (
    SendNotification,
    caught_up_frame,
    check_text,
    notification_frame,
)
from tidings.core.tokens import Identity
from tidings.hub import Connection, Hub
from tidings.store.base import PAGE_LIMIT, Store

log = logging.getLogger("tidings.node")

CLOSE_STORE_DOWN = 1011
"""Close code when a connection cannot be synced because the store is down."""


def fingerprint(recipients: Sequence[str], message: str, data: JSONObject | None) -> str:
    """Digest of what a publish asks for: tells a retry from a reused key."""
    body = {"to": sorted(recipients), "message": message, "data": data}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Node:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        encode: Callable[[bytes], bytes],
        user_send: str = "any",
        gap_wait: float = 0.05,
    ) -> None:
        self.store = store
        self.broker = broker
        self.encode = encode
        """Wraps an encoded frame for the transport (a WebSocket text frame)."""
        self.hub = Hub(encode=encode, on_gap=self._on_gap)
        self.user_send = user_send
        self.gap_wait = gap_wait
        self.draining = False
        self.broker_up = True
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._syncing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.store.open()
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

    # -- publish -------------------------------------------------------------

    async def send(self, sender: Identity, action: SendNotification) -> PublishResult:
        """The WebSocket ``sendNotification`` action, with the sender from the token."""
        if not sender.admin:
            if self.user_send == "none":
                raise Forbidden("this server does not let users send notifications")
            if self.user_send == "self" and action.user_id != sender.user_id:
                raise Forbidden("this server lets users send notifications only to themselves")
        return await self.publish(
            [action.user_id],
            action.message,
            data=action.data,
            sender=sender.user_id,
            idempotency_key=action.idempotency_key,
        )

    async def publish(
        self,
        recipients: Sequence[str],
        message: str,
        *,
        data: JSONObject | None = None,
        sender: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Store for every recipient in one transaction, then push; returns after both."""
        unique = tuple(dict.fromkeys(recipients))
        if not unique:
            raise BadRequest("no recipients")
        for user in unique:
            check_text(user, "userId")
        check_text(message, "message")
        check_text(idempotency_key or "", "idempotencyKey")
        request = PublishRequest(
            id=new_id(),
            recipients=unique,
            message=message,
            created_at=time.time_ns() // 1_000_000,
            sender=sender,
            data=data,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint(unique, message, data) if idempotency_key else "",
        )
        self._inflight += 1
        self._idle.clear()
        try:
            result = await self.store.append(request)
            if result.stored:
                await self._push(result)
            return result
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _push(self, result: PublishResult) -> None:
        publications = [Publication(n.user_id, n.seq, notification_frame(n)) for n in result.stored]
        try:
            await self.broker.publish(publications)
        except Unavailable as exc:
            # Stored already: clients get it from the repair after the broker returns.
            log.warning("broker publish failed", extra={"error": str(exc)})

    # -- catch-up and gap repair ---------------------------------------------

    def attach(self, conn: Connection, since: int | None) -> None:
        """Register a new connection; with ``since``, replay then announce caughtUp."""
        self.hub.add(conn)
        if since is not None:
            self._spawn(self.sync(conn, since=since))

    def detach(self, conn: Connection) -> None:
        self.hub.remove(conn)

    def _on_gap(self, conn: Connection) -> None:
        if conn.id not in self._syncing:
            self._spawn(self.sync(conn, wait=self.gap_wait))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync(self, conn: Connection, *, since: int | None = None, wait: float = 0) -> None:
        """Bring one connection up to the store's head, then release held frames.

        With ``since`` this is the connect-time replay and ends with the
        ``caughtUp`` frame; without it, a gap repair, which first waits
        ``wait`` seconds for the missing frame to arrive by itself.
        """
        self._syncing.add(conn.id)
        cursor = conn.cursor
        try:
            if wait:
                await asyncio.sleep(wait)
                frames, more = cursor.drain_held()
                for frame in frames:
                    conn.write_frame(frame)
                if not more:
                    return
            complete = True
            first = True
            while self.hub.get(conn.id) is conn:
                after = cursor.last if cursor.last is not None else 0
                page = await self.store.read_stream(conn.user_id, after_seq=after)
                if first and since is not None:
                    complete = page.trimmed <= since
                first = False
                for item in page.items:
                    if cursor.last is None or item.seq > cursor.last:
                        conn.write_frame(self.encode(notification_frame(item)))
                        cursor.delivered(item.seq)
                if len(page.items) >= PAGE_LIMIT:
                    await self._drain(conn)
                    continue
                cursor.skip_to(page.head)
                if since is not None:
                    conn.write_frame(self.encode(caught_up_frame(page.head, complete=complete)))
                    since = None
                frames, more = cursor.drain_held()
                for frame in frames:
                    conn.write_frame(frame)
                if not more:
                    return
        except Unavailable as exc:
            log.error(
                "sync failed, closing connection",
                extra={"conn": conn.id, "user": conn.user_id, "error": str(exc)},
            )
            conn.close(CLOSE_STORE_DOWN, "store unavailable; reconnect with since")
        finally:
            self._syncing.discard(conn.id)

    @staticmethod
    async def _drain(conn: Connection) -> None:
        drain = getattr(conn, "drain", None)
        if drain is not None:
            await drain()

    def _on_broker_state(self, up: bool) -> None:
        self.broker_up = up
        if up:
            self._spawn(self.repair_all())

    async def repair_all(self) -> None:
        """After a broker outage: compare every local stream's head with what its
        connections were sent, in one batched query, and sync those behind."""
        users = self.hub.users()
        for start in range(0, len(users), 1000):
            chunk = users[start : start + 1000]
            heads = await self.store.heads(chunk)
            for user in chunk:
                for conn in self.hub.of_user(user):
                    last = conn.cursor.last
                    behind = last is None or heads.get(user, 0) > last
                    if behind and conn.id not in self._syncing and last is not None:
                        conn.cursor.syncing = True
                        self._spawn(self.sync(conn))
