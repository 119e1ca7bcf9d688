"""Tokens expire while connected: each connection is told ``notice`` seconds
before its token's ``exp`` and closed with 4401 at ``exp``, unless it sent a
new token for the same user (``refreshToken``) meanwhile.

One timer for every connection, nothing per delivery: connections wait in
buckets of one wall-clock second (a set each, so a connection that closes or
refreshes leaves its bucket at once), and a heap of the buckets' seconds
says when the single timer fires next.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from tidings.core.errors import Forbidden, TidingsError
from tidings.core.keys import Keys
from tidings.core.protocol import RefreshToken, error_frame, reply_frame, token_expiring_frame
from tidings.core.tokens import Identity, verify_fresh

log = logging.getLogger("tidings.ws")

CLOSE_TOKEN_EXPIRED = 4401
EXPIRED_REASON = "token expired; refresh it or reconnect with a new token"


class Expiring(Protocol):
    """What the clock needs of a connection (``WebSocketConnection``)."""

    id: str
    user_id: str
    open: bool
    identity: Identity | None

    def send(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class TokenClock:
    def __init__(
        self, *, notice: float, keys: Keys, spawn: Callable[[asyncio.Task[None]], None]
    ) -> None:
        self.notice = notice
        self.keys = keys
        self._spawn = spawn
        """Keeps a task alive until it ends (``Runtime.track``)."""
        self._buckets: dict[int, set[Expiring]] = {}
        self._where: dict[Expiring, int] = {}
        """The second of the bucket each connection waits in."""
        self._seconds: list[int] = []
        """Heap of the buckets' seconds (one entry per bucket)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._where)

    def watch(self, conn: Expiring) -> None:
        """Start (or restart, after a refresh) the countdown of ``conn``'s token."""
        self.forget(conn)
        assert conn.identity is not None
        expires_at = conn.identity.expires_at
        if expires_at is None:
            return
        now = time.time()
        self._file(conn, expires_at - self.notice if expires_at - self.notice > now else now)

    def forget(self, conn: Expiring) -> None:
        """The connection closed: drop it from its bucket."""
        second = self._where.pop(conn, None)
        if second is not None:
            bucket = self._buckets.get(second)
            if bucket is not None:
                bucket.discard(conn)

    def refresh(self, conn: Expiring, action: RefreshToken) -> None:
        """Take a new token over the open connection (checked in a task)."""
        self._spawn(asyncio.get_running_loop().create_task(self._refresh(conn, action)))

    async def _refresh(self, conn: Expiring, action: RefreshToken) -> None:
        """Check the new token as at the handshake; an error frame (and the old
        token's countdown) when it is refused."""
        try:
            identity = await verify_fresh(self.keys, action.token)
            if identity.user_id != conn.user_id:
                raise Forbidden("the new token is for another user than the connection's")
        except TidingsError as exc:
            conn.send(error_frame(exc.code, exc.message, action.request_id))
            return
        if not conn.open:
            return
        conn.identity = identity
        self.watch(conn)
        conn.send(reply_frame(action.request_id, expiresAt=identity.expires_at))

    def _file(self, conn: Expiring, at: float) -> None:
        second = math.ceil(at)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
            heapq.heappush(self._seconds, second)
        bucket.add(conn)
        self._where[conn] = second
        if second < self._timer_at:
            self._arm(second)

    def _arm(self, second: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = second
        delay = max(0.0, second - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = time.time()
        seconds = self._seconds
        while seconds and seconds[0] <= now:
            for conn in self._buckets.pop(heapq.heappop(seconds), ()):
                del self._where[conn]
                if conn.open and conn.identity is not None:
                    self._due(conn, conn.identity.expires_at, now)
        if seconds:
            self._arm(seconds[0])

    def _due(self, conn: Expiring, expires_at: int | None, now: float) -> None:
        if expires_at is None:
            return
        if now >= expires_at:
            log.info("token expired", extra={"conn": conn.id, "user": conn.user_id})
            conn.close(CLOSE_TOKEN_EXPIRED, EXPIRED_REASON)
            return
        conn.send(token_expiring_frame(expires_at, now))
        self._file(conn, expires_at)
