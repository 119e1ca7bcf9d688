"""This node's live connections, by user and by topic, and the fan-out loops.

A frame reaches the hub already encoded; the hub wraps it in a WebSocket
frame once and writes those same bytes to each connection that its cursor
allows. No task, no copy and no JSON per delivery. A topic frame is the same
for every subscriber, so a broadcast is one frame written N times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import orjson

from tidings.core.cursor import DELIVER, GAP, StreamCursor
from tidings.core.inbox import EVERYONE
from tidings.core.models import Publication
from tidings.core.tokens import Identity


class Connection(Protocol):
    """What the engine needs of a client connection, whatever its transport:
    the hub, catch-up, heartbeat, drain and the cluster use nothing else."""

    id: str
    user_id: str
    cursor: StreamCursor
    """Delivery rules for the user's personal stream."""
    topics: dict[str, StreamCursor]
    """Delivery rules per subscribed topic (``everyone`` always among them)."""
    last_seen: float
    """Loop time of the last byte received: any traffic proves the peer alive."""
    last_ping: float
    connected_at: float
    """Wall-clock seconds of the handshake (the management API shows it)."""
    source_ip: str
    user_agent: str
    identity: Identity | None
    """Who the token says (None until the handshake is done); revocations read it."""

    @property
    def last_active(self) -> float:
        """Wall-clock seconds of the last bytes received from the client."""
        ...

    def ping(self) -> None: ...

    def abort(self) -> None:
        """Drop the socket at once (a peer that stopped answering)."""

    def write_frame(self, frame: bytes) -> None:
        """Write a ready frame; a connection too slow to take it closes itself."""

    async def drain(self) -> None:
        """Wait until the send buffer has room (catch-up pages wait on it)."""

    def pause_reading(self) -> None:
        """Read nothing more from the client (a draining node takes no new sends)."""

    def close(self, code: int, reason: str) -> None: ...


ConnectionHandler = Callable[[Connection], None]


GapHandler = Callable[[Connection, str | None], None]
"""Told that a connection saw a seq jump in its personal stream (None) or a topic."""

TopicEventHandler = Callable[[str, bytes, list[Connection]], None]
"""Given an event about a topic (its items expired) and this node's subscribers
of it, to tell each of them with their own counts."""


class Hub:
    def __init__(
        self,
        *,
        encode: Callable[[bytes], bytes],
        on_gap: GapHandler,
        on_topic_event: TopicEventHandler | None = None,
    ) -> None:
        self._encode = encode
        self._on_gap = on_gap
        self._on_topic_event = on_topic_event
        self._by_user: dict[str, dict[str, Connection]] = {}
        self._by_id: dict[str, Connection] = {}
        self._by_topic: dict[str, dict[str, Connection]] = {}
        """Subscribers of each topic but ``everyone``, which is every connection."""
        self._on_add: list[ConnectionHandler] = []
        self._on_remove: list[ConnectionHandler] = []
        self.deliveries = 0
        """Frames written by fan-out since start (for metrics)."""

    def listen(self, on_add: ConnectionHandler, on_remove: ConnectionHandler) -> None:
        """Tell ``on_add``/``on_remove`` of each connection joining or leaving
        (the cluster's registry mirrors them)."""
        self._on_add.append(on_add)
        self._on_remove.append(on_remove)

    def unlisten(self, on_add: ConnectionHandler, on_remove: ConnectionHandler) -> None:
        with contextlib.suppress(ValueError):
            self._on_add.remove(on_add)
        with contextlib.suppress(ValueError):
            self._on_remove.remove(on_remove)

    def add(self, conn: Connection) -> None:
        self._by_id[conn.id] = conn
        self._by_user.setdefault(conn.user_id, {})[conn.id] = conn
        for topic in conn.topics:
            self._join(conn, topic)
        for handler in self._on_add:
            handler(conn)

    def remove(self, conn: Connection) -> None:
        if self._by_id.pop(conn.id, None) is None:
            return
        conns = self._by_user.get(conn.user_id)
        if conns is not None:
            conns.pop(conn.id, None)
            if not conns:
                del self._by_user[conn.user_id]
        for topic in conn.topics:
            self._leave(conn, topic)
        for handler in self._on_remove:
            handler(conn)

    def subscribe(self, conn: Connection, topic: str, cursor: StreamCursor) -> None:
        """Start delivering ``topic`` to ``conn`` under ``cursor``'s rules."""
        conn.topics[topic] = cursor
        if conn.id in self._by_id:
            self._join(conn, topic)

    def unsubscribe(self, conn: Connection, topic: str) -> None:
        if conn.topics.pop(topic, None) is not None:
            self._leave(conn, topic)

    def _join(self, conn: Connection, topic: str) -> None:
        if topic != EVERYONE:
            self._by_topic.setdefault(topic, {})[conn.id] = conn

    def _leave(self, conn: Connection, topic: str) -> None:
        subscribers = self._by_topic.get(topic)
        if subscribers is not None:
            subscribers.pop(conn.id, None)
            if not subscribers:
                del self._by_topic[topic]

    def deliver(self, publication: Publication) -> None:
        """Hand one publication from the broker to the connections it is for."""
        topic = publication.topic
        if topic is not None:
            if publication.seq:
                self._deliver_topic(topic, publication)
            elif publication.user_id:
                self._subscription_changed(publication)
            elif self._on_topic_event is not None:  # an event about a topic
                self._on_topic_event(topic, publication.payload, self._subscribers(topic))
            else:
                self.write(self._subscribers(topic), publication.payload)
            return
        conns = self._by_user.get(publication.user_id)
        if not conns:
            return
        frame = self._encode(publication.payload)
        seq = publication.seq
        if not seq:  # outside the stream (an inbox change): every connection, as is
            for conn in list(conns.values()):
                conn.write_frame(frame)
            return
        written = 0
        for conn in list(conns.values()):
            verdict = conn.cursor.offer(seq, frame)
            if verdict == DELIVER:
                conn.write_frame(frame)
                written += 1
            elif verdict == GAP:
                self._on_gap(conn, None)
        self.deliveries += written

    def write(self, conns: list[Connection], payload: bytes) -> None:
        """Write one payload, framed once, to each of ``conns``."""
        frame = self._encode(payload)
        for conn in conns:
            conn.write_frame(frame)

    def post(self, connection_id: str, payload: bytes) -> bool:
        """Write ``payload`` as is to one connection; False if it is not on this node."""
        conn = self._by_id.get(connection_id)
        if conn is None:
            return False
        conn.write_frame(self._encode(payload))
        return True

    def _subscribers(self, topic: str) -> list[Connection]:
        if topic == EVERYONE:
            return list(self._by_id.values())
        return list(self._by_topic.get(topic, {}).values())

    def _deliver_topic(self, topic: str, publication: Publication) -> None:
        subscribers = self._subscribers(topic)
        if not subscribers:
            return
        frame = self._encode(publication.payload)
        seq = publication.seq
        written = 0
        for conn in subscribers:
            cursor = conn.topics.get(topic)
            if cursor is None:
                continue
            verdict = cursor.offer(seq, frame)
            if verdict == DELIVER:
                conn.write_frame(frame)
                written += 1
            elif verdict == GAP:
                self._on_gap(conn, topic)
        self.deliveries += written

    def _subscription_changed(self, publication: Publication) -> None:
        """The user joined or left a topic (on any node): follow it on every connection,
        and tell them."""
        assert publication.topic is not None
        event = orjson.loads(publication.payload)
        frame = self._encode(publication.payload)
        for conn in self.of_user(publication.user_id):
            if event.get("subscribed"):
                if publication.topic not in conn.topics:
                    self.subscribe(conn, publication.topic, StreamCursor(event.get("seq", 0)))
            else:
                self.unsubscribe(conn, publication.topic)
            conn.write_frame(frame)

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
