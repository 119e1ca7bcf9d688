"""Frames written in one loop iteration leave in one write per connection, in order."""

from __future__ import annotations

import asyncio

from tidings.web.outbox import Outbox


class Transport:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Conn:
    """The queueing half of ``WebSocketConnection.write_frame``."""

    def __init__(self, outbox: Outbox, transport: Transport, limit: int = 100) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = transport
        self._pending: list[bytes] | None = None
        self._holding = False
        self._buffer_limit = limit
        self.outbox = outbox
        self.slow = False

    def write_frame(self, frame: bytes) -> None:
        if self._pending is None:
            self._pending = [frame]
            if not self.outbox.due:
                self.loop.call_soon(self.outbox.flush)
            self.outbox.due.append(self)
        else:
            self._pending.append(frame)

    def _slow_consumer(self) -> None:
        self.slow = True


async def test_one_write_per_connection_per_iteration_in_order() -> None:
    outbox = Outbox()
    a, b = Conn(outbox, Transport()), Conn(outbox, Transport(buffered=500))
    for frame in (b"1", b"2", b"3"):
        a.write_frame(frame)
    b.write_frame(b"x")
    assert a.transport.writes == [] and b.transport.writes == []  # not before the flush
    await asyncio.sleep(0)
    assert a.transport.writes == [b"123"] and b.transport.writes == [b"x"]
    assert b.slow and not a.slow  # the backlog is checked at the flush
    a.write_frame(b"4")
    await asyncio.sleep(0)
    assert a.transport.writes == [b"123", b"4"]
    assert outbox.due == []
