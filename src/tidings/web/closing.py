"""How a WebSocket connection ends: the closing handshake and its timeout, the
protocol's own closes, a slow consumer dropped so that it can still learn why,
and shutdown. Mixed into ``WebSocketConnection``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.web.backpressure import HeldFrames, ReadHolds
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.ws")

__all__ = ["CLOSE_GOING_AWAY_RESTART", "CLOSE_TIMEOUT", "Closing"]

CLOSE_GOING_AWAY_RESTART = 1012
CLOSE_SLOW_CONSUMER = 1008
SLOW_CONSUMER_REASON = "slow consumer: send buffer limit exceeded; reconnect with since"
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the client's close frame before dropping the socket."""
SLOW_CONSUMER_LINGER = 30.0
"""Seconds a dropped slow consumer's socket is kept so that its close frame
reaches it when it reads again. Its queued frames are dropped first, so this
costs at most the transport's high-water mark (64 KiB) per connection."""


class Closing:
    """The closing half of ``WebSocketConnection``, whose state it reads and sets."""

    if not TYPE_CHECKING:  # no dict of its own; mypy would check its assignments
        __slots__ = ()

    id: str
    user_id: str
    runtime: Runtime
    ws: ServerProtocol | None
    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop
    open: bool
    closing: bool
    _pending: list[bytes] | None
    _held: HeldFrames
    _holding: bool
    _reading: ReadHolds
    _close_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:  # declared only: the connection defines them

        def _write_pending(self) -> None: ...

        def _detach(self) -> None:
            """Leave the node: nothing more is delivered to this connection."""

        def release_reading(self, *reasons: str) -> None: ...

    def _slow_consumer(self) -> None:
        """Close a client that stopped reading, in a way it can still learn why.

        Its frames not yet handed to the transport are dropped (reconnecting
        with ``since`` recovers them), so the close frame follows at most the
        transport's high-water mark (64 KiB) instead of the whole backlog, and
        reaches the client if it reads again within ``SLOW_CONSUMER_LINGER``
        (or later, if by then the kernel took it: see ``_close_timed_out``).
        """
        if not self.open or self.closing:
            return
        transport = self.transport
        self.runtime.counters.slow_consumers += 1
        self._pending = None
        dropped = self._held.drop()
        self._holding = False
        log.warning(
            "slow consumer disconnected",
            extra={
                "conn": self.id,
                "user": self.user_id,
                "code": CLOSE_SLOW_CONSUMER,
                "dropped_bytes": dropped,
                "buffered_bytes": transport.get_write_buffer_size() if transport else 0,
            },
        )
        self.close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, timeout=SLOW_CONSUMER_LINGER)

    def close(self, code: int, reason: str, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Start the closing handshake; drop the socket if the client does not
        answer within ``timeout`` seconds."""
        if not self.open or self.closing:
            return
        self._write_pending()
        if self.closing:  # the backlog was too big: closing already
            return
        self._held.release(self.transport)
        self._holding = False
        self.closing = True
        self._detach()
        if self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
        self._flush()
        # Reading may have been paused (drain, backpressure): the client's
        # close frame must get through. Messages after this are ignored; a
        # read still being parsed resumes reading once parsed.
        self.release_reading(*(self._reading.reasons - {"parse"}))
        if self._close_timer is not None:  # the protocol's own, for a close it sent
            self._close_timer.cancel()
        self._close_timer = self.loop.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        """The client did not finish the closing handshake in time.

        When everything written, the close frame included, is already in the
        kernel, the socket is closed normally: the kernel still delivers it
        all, then the FIN, to a client that reads later. Otherwise it is
        reset, and the client sees the connection drop without a close frame.
        """
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size() == 0:
            transport.close()
        else:
            transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Called by uvicorn when the server stops."""
        if self.open:
            self.close(CLOSE_GOING_AWAY_RESTART, "server restarting; reconnect with since")
        elif self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        transport = self.transport
        ws = self.ws
        if transport is None or ws is None:
            return
        self._write_pending()
        if self.open and not self.closing and ws.state is not State.OPEN:
            # The protocol closed on its own (client close, 1009, protocol error).
            self.closing = True
            self._detach()
            sent = ws.close_sent
            if sent is not None and sent.code == 1009 and ws.close_rcvd is None:
                self.runtime.counters.limits["max_frame_bytes"] += 1
        for data in ws.data_to_send():
            if data:
                transport.write(data)
            elif ws.state is State.CLOSING and ws.close_rcvd is None and transport.can_write_eof():
                # We failed the connection (a limit, a protocol error) while the
                # client may still be sending: closing with its bytes unread
                # would reset the connection, and the reset can destroy the
                # close frame on its way. Half-close; the rest is read and
                # dropped until the client closes its side or the close timeout.
                transport.write_eof()
            else:
                transport.close()
        if ws.close_expected() and self._close_timer is None:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)
