"""This node's live connections, by user, and the fan-out loop.

A frame reaches the hub already encoded; the hub wraps it in a WebSocket
frame once and writes those same bytes to each of the user's connections
that its cursor allows. No task, no copy and no JSON per delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from tidings.core.cursor import DELIVER, GAP, StreamCursor
from tidings.core.models import Publication


class Connection(Protocol):
    """What the hub needs of a client connection (the transport implements it)."""

    id: str
    user_id: str
    cursor: StreamCursor
    last_seen: float
    """Loop time of the last byte received: any traffic proves the peer alive."""
    last_ping: float

    def ping(self) -> None: ...

    def abort(self) -> None:
        """Drop the socket at once (a peer that stopped answering)."""

    def write_frame(self, frame: bytes) -> None:
        """Write a ready WebSocket frame; a connection too slow to take it closes itself."""

    def close(self, code: int, reason: str) -> None: ...


class Hub:
    def __init__(
        self,
        *,
        encode: Callable[[bytes], bytes],
        on_gap: Callable[[Connection], None],
    ) -> None:
        self._encode = encode
        self._on_gap = on_gap
        self._by_user: dict[str, dict[str, Connection]] = {}
        self._by_id: dict[str, Connection] = {}
        self.deliveries = 0
        """Frames written by fan-out since start (for metrics)."""

    def add(self, conn: Connection) -> None:
        self._by_id[conn.id] = conn
        self._by_user.setdefault(conn.user_id, {})[conn.id] = conn

    def remove(self, conn: Connection) -> None:
        if self._by_id.pop(conn.id, None) is None:
            return
        conns = self._by_user.get(conn.user_id)
        if conns is not None:
            conns.pop(conn.id, None)
            if not conns:
                del self._by_user[conn.user_id]

    def deliver(self, publication: Publication) -> None:
        conns = self._by_user.get(publication.user_id)
        if not conns:
            return
        frame = self._encode(publication.payload)
        seq = publication.seq
        written = 0
        for conn in list(conns.values()):
            verdict = conn.cursor.offer(seq, frame)
            if verdict == DELIVER:
                conn.write_frame(frame)
                written += 1
            elif verdict == GAP:
                self._on_gap(conn)
        self.deliveries += written

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    def of_user(self, user_id: str) -> list[Connection]:
        return list(self._by_user.get(user_id, {}).values())

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def users(self) -> list[str]:
        return list(self._by_user)

    def close_all(self, code: int, reason: str) -> None:
        for conn in self:
            conn.close(code, reason)
