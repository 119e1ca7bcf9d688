"""Frames leave at the end of the loop iteration, one write per connection.

A group commit acks many sends at once and a burst of broadcasts reaches the
same sockets several times in one iteration; each connection's frames of
that iteration go out in one ``transport.write`` (one system call) instead
of one each. Order is kept: frames queue in the order they were written.
One callback per iteration flushes every connection that has frames, not
one per connection. A connection whose transport is full keeps its frames
itself (``_hold``) until the transport has room.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Queued(Protocol):
    """What the outbox needs of a connection (``WebSocketConnection``)."""

    transport: asyncio.Transport | None
    _pending: list[bytes] | None
    _holding: bool
    """True while the transport is full: frames then wait with the connection."""
    _buffer_limit: int

    def _hold(self, frames: list[bytes]) -> None: ...

    def _slow_consumer(self) -> None: ...


class Outbox:
    def __init__(self) -> None:
        self.due: list[Queued] = []
        """Connections with frames queued in this iteration; the first one to
        queue schedules ``flush`` (inlined by the connection: per delivery)."""

    def flush(self) -> None:
        """Write each due connection's frames in one write, then check its backlog.

        The loop body is the hot path of every fan-out, so it is flat here
        rather than a call of the connection's ``_write_pending`` (its twin,
        for the close paths): the call per connection measured 0.2-0.4 µs
        more per delivery in the broadcast workload.
        """
        due = self.due[:]
        self.due.clear()  # the same list: connections hold it
        for conn in due:
            pending, conn._pending = conn._pending, None
            transport = conn.transport
            if pending is None or transport is None or transport.is_closing():
                continue
            if conn._holding:
                conn._hold(pending)
                continue
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            if transport.get_write_buffer_size() > conn._buffer_limit:
                conn._slow_consumer()
