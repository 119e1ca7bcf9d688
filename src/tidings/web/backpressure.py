"""Flow control both ways: frames a connection's transport cannot take yet,
kept whole and in order, and the reasons reading from a client is paused.

Past its high-water mark a transport would buffer without end; frames wait
here instead, so that a slow consumer's backlog can be dropped and its close
frame still follow at most one high-water mark of bytes (see
``WebSocketConnection._slow_consumer``). Any transport over an
``asyncio.Transport`` can use it.
"""

from __future__ import annotations

import asyncio
from collections import deque

PUSH_BYTES = 64 * 1024
"""Held frames handed to the transport in one write once it has room."""


class HeldFrames:
    __slots__ = ("_frames", "_paused", "_writable", "bytes", "holding")
    """One per connection: slots keep 10,000 of them small."""

    def __init__(self) -> None:
        self._frames: deque[bytes] | None = None
        self.holding = False
        """True while frames must wait here rather than go to the transport."""
        self.bytes = 0
        self._paused = False
        self._writable: asyncio.Event | None = None

    def pause(self) -> None:
        """The transport is over its high-water mark (``pause_writing``)."""
        self._paused = True
        if self._frames is None:
            self._frames = deque()
            self.holding = True
        if self._writable is None:
            self._writable = asyncio.Event()

    def resume(self, transport: asyncio.Transport) -> None:
        """The transport has room again (``resume_writing``): hand it what waits,
        until it is full again; all gone: writable."""
        self._paused = False
        frames = self._frames
        if frames is None or transport.is_closing():
            return
        while frames and not self._paused:
            batch = [frames.popleft()]
            size = len(batch[0])
            while frames and size < PUSH_BYTES:
                batch.append(frames.popleft())
                size += len(batch[-1])
            self.bytes -= size
            transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        if not frames and not self._paused:
            self.drop()

    def add(self, frames: list[bytes]) -> None:
        assert self._frames is not None
        self._frames.extend(frames)
        self.bytes += sum(map(len, frames))

    def release(self, transport: asyncio.Transport | None) -> None:
        """Everything held goes to the transport now (before a close frame)."""
        if self._frames and transport is not None and not transport.is_closing():
            transport.write(b"".join(self._frames))
        self.drop()

    def drop(self) -> int:
        """Forget what is held (the connection is gone or dropped); returns its size."""
        dropped = self.bytes
        self._frames = None
        self.holding = False
        self.bytes = 0
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return dropped

    async def writable(self) -> None:
        """Wait until the transport is below its high-water mark."""
        if self._writable is not None:
            await self._writable.wait()


NO_HOLDS: frozenset[str] = frozenset()


class ReadHolds:
    """Why reading from a client is paused; it resumes when no reason is left.

    Several can hold at once (sends awaiting commit, a read still being
    parsed, a drain, the API Gateway routes' backlog): releasing one must not
    undo another.
    """

    __slots__ = ("reasons",)

    def __init__(self) -> None:
        self.reasons = NO_HOLDS

    def hold(self, transport: asyncio.Transport | None, reason: str) -> None:
        if not self.reasons and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self.reasons = self.reasons | {reason}

    def release(self, transport: asyncio.Transport | None, *reasons: str) -> None:
        if self.reasons.isdisjoint(reasons):
            return
        self.reasons = self.reasons.difference(reasons) or NO_HOLDS
        if not self.reasons and transport is not None and not transport.is_closing():
            transport.resume_reading()
