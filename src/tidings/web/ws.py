"""The WebSocket transport: an asyncio protocol that uvicorn hands upgrades to.

uvicorn parses HTTP and, on ``Upgrade: websocket``, gives this class the
socket and the request bytes. A plain, valid upgrade request (what clients
send) is answered here with a prebuilt response; any other request goes
through python-websockets' sans-I/O ``ServerProtocol``, which validates it and
answers with its own errors. Incoming frames go through ``ServerProtocol``
too; outgoing notification frames bypass it: the hub writes ready-made bytes
straight to the transport. Each client message becomes at most one small
task (a send awaiting its commit).

Two limits keep one client from taking what belongs to all: a read is parsed
a bounded number of frames per loop iteration (see ``_parse``), and frames
that the transport cannot take yet wait here, whole, so that a slow
consumer's can be dropped and its close frame still reach it (see
``_slow_consumer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.core.cursor import StreamCursor
from tidings.core.errors import ProtocolError, TidingsError
from tidings.core.frames import PING, text_frame
from tidings.core.protocol import (
    Ping,
    RefreshToken,
    SendNotification,
    error_frame,
    error_frame_for,
    parse_client_frame,
    pong_frame,
)
from tidings.core.tokens import Identity
from tidings.web.actions import Action, carry_out
from tidings.web.backpressure import HeldFrames, ReadHolds
from tidings.web.closing import Closing
from tidings.web.counters import WEBSOCKET
from tidings.web.fragments import MessageRefused, Reassembly
from tidings.web.handshake import Admission
from tidings.web.refusing import Refusing
from tidings.web.runtime import Runtime
from tidings.web.upgrade import Handshaking

log = logging.getLogger("tidings.ws")

MAX_INFLIGHT = 64
"""Sends awaiting commit per connection before we stop reading from it."""
PARSE_SLICE = 2048
"""Bytes of a read handed to the frame parser at once: at most 341 client
frames (6 bytes each when empty), about 1 ms of parsing."""
FRAMES_PER_TURN = 256
"""Frames parsed for one connection in one loop iteration; the rest of its read
waits for the next iteration. The parser takes 3 µs a frame whatever its
size, so one read of 100,000 tiny frames would otherwise stall every other
connection for 300 ms."""


class WebSocketConnection(Handshaking, Refusing, Closing, asyncio.Protocol):
    """One client: handshake, then frames in and ready-made frames out."""

    __slots__ = (
        "__weakref__",
        "_buffer_limit",
        "_close_timer",
        "_due",
        "_fragments",
        "_frame_allowance",
        "_held",
        "_holding",
        "_inflight",
        "_pending",
        "_reading",
        "_unparsed",
        "_unparsed_at",
        "closing",
        "connected_at",
        "cursor",
        "id",
        "identity",
        "last_ping",
        "last_seen",
        "loop",
        "node",
        "open",
        "outbox",
        "peer",
        "runtime",
        "server_state",
        "source_ip",
        "topics",
        "transport",
        "user_agent",
        "user_id",
        "ws",
    )
    """Ten thousand of these stay open: slots keep each one small (no dict)."""

    def __init__(
        self,
        runtime: Runtime,
        config: Any = None,
        server_state: Any = None,
        app_state: Any = None,
        _loop: Any = None,
    ) -> None:
        self.runtime = runtime
        self.node = runtime.node
        self.server_state = server_state
        self.ws: ServerProtocol | None = None
        """Created with the first bytes: already open after a plain handshake."""
        self.transport: asyncio.Transport | None = None
        self.id = self.node.new_connection_id()
        self.user_id = ""
        self.identity: Identity | None = None
        self.cursor: StreamCursor
        self.topics: dict[str, StreamCursor] = {}
        """Both set by catch-up when the connection joins the node."""
        self.peer = ""
        self.open = False
        self.closing = False
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.connected_at = time.time()
        """Wall clock (the management API shows it); ``last_seen`` is loop time."""
        self.last_seen = loop.time()
        self.last_ping = self.last_seen
        self.source_ip = ""
        self.user_agent = ""
        self._fragments = Reassembly(
            runtime.settings.max_fragments, runtime.settings.max_fragment_bytes
        )
        self._frame_allowance = runtime.throttle.frames()
        self._unparsed: bytes | None = None
        self._unparsed_at = 0
        """The rest of a read, from ``_unparsed_at``, left for the next loop iteration."""
        self._pending: list[bytes] | None = None
        """Frames waiting for the end of this loop iteration (after a reply), in order."""
        self._buffer_limit = runtime.settings.send_buffer_limit
        self.outbox = runtime.outbox
        self._due = runtime.outbox.due
        """Bytes the transport may hold for this client before it counts as slow."""
        self._inflight = 0
        self._reading = ReadHolds()
        self._held = HeldFrames()
        """Frames waiting while the transport is over its high-water mark."""
        self._holding = False
        """``_held.holding``, kept here too: the outbox reads it per delivery, and
        at 10,000 connections a second object per connection is a cache miss."""
        self._close_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; same interface.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.source_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        if self.server_state is not None:
            self.server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.loop.time()
        if self._unparsed is not None:  # reading was paused; kept in order all the same
            self._unparsed = self._unparsed[self._unparsed_at :] + data
            self._unparsed_at = 0
            return
        if self.ws is None:
            if self._plain_handshake(data):
                return
            self.ws = self._protocol(State.CONNECTING)
        self._parse(data, 0)

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._unparsed = None
        self._held.drop()
        self._holding = False
        self.runtime.clock.forget(self)
        if self.open:
            self.open = False
            self.node.detach(self)
            close = (self.ws.close_rcvd or self.ws.close_sent) if self.ws is not None else None
            log.info(
                "disconnected",
                extra={
                    "conn": self.id,
                    "user": self.user_id,
                    "code": close.code if close else 1006,
                },
            )
            if self.runtime.gateway is not None:
                self.runtime.gateway.disconnected(
                    self, close.code if close else 1006, close.reason if close else ""
                )

    def pause_writing(self) -> None:
        """The transport is over its high-water mark: frames wait in ``_held``."""
        self._held.pause()
        self._holding = True

    def resume_writing(self) -> None:
        if self.transport is not None:
            self._held.resume(self.transport)
            self._holding = self._held.holding

    # -- handshake -----------------------------------------------------------

    def _open(self, admission: Admission, user_agent: str) -> None:
        """The handshake response is on its way: join the node."""
        identity, since, topics = admission.identity, admission.since, admission.topics
        self.identity = identity
        self.user_id = identity.user_id
        self.user_agent = user_agent
        self.open = True
        self.runtime.counters.handshakes += 1
        self._flush()
        log.info(
            "connected",
            extra={"conn": self.id, "user": self.user_id, "since": since, "peer": self.peer},
        )
        self.node.attach(self, since, topics)
        self.runtime.clock.watch(self)

    # -- frames in -----------------------------------------------------------

    def _parse(self, data: bytes, start: int) -> None:
        """Parse ``data[start:]`` and act on its frames, ``FRAMES_PER_TURN`` a loop iteration.

        The parser runs to the end of whatever it is given, so it is given
        ``PARSE_SLICE`` bytes at a time; once a turn's frames are used up,
        reading pauses and the rest waits for the next iteration, after the
        other connections had theirs.
        """
        ws = self.ws
        assert ws is not None
        end = len(data)
        frames = 0
        while start < end:
            whole = start == 0 and end <= PARSE_SLICE
            ws.receive_data(data if whole else data[start : start + PARSE_SLICE])
            start += PARSE_SLICE
            for event in ws.events_received():
                if isinstance(event, Frame):
                    frames += 1
                    self._on_frame(event)
                elif isinstance(event, Request):
                    self._handshake(event)
            if frames >= FRAMES_PER_TURN and start < end:
                self._unparsed, self._unparsed_at = data, start
                self.hold_reading("parse")  # part of the read is still to be parsed
                self.loop.call_soon(self._parse_rest)
                break
        self._flush()

    def _parse_rest(self) -> None:
        data, start = self._unparsed, self._unparsed_at
        self._unparsed = None
        if data is None or self.transport is None or self.transport.is_closing():
            return  # the connection is gone
        self._parse(data, start)
        if self._unparsed is None:
            self.release_reading("parse")

    def _detach(self) -> None:
        self.node.detach(self)

    def hold_reading(self, reason: str) -> None:
        """Read nothing more from the client until ``release_reading(reason)``."""
        self._reading.hold(self.transport, reason)

    def release_reading(self, *reasons: str) -> None:
        self._reading.release(self.transport, *reasons)

    def _on_frame(self, frame: Frame) -> None:
        if self.closing:
            return
        allowance = self._frame_allowance
        if (
            frame.opcode is Opcode.PING
            and allowance is not None
            and self._over_frame_rate(allowance.take(self.loop.time()), None)
        ):
            return
        try:
            message = self._fragments.add(frame)
        except MessageRefused as refused:
            self._refuse_message(refused)
            return
        if message is not None:
            self._on_message(message)

    def _on_message(self, data: bytes | bytearray | memoryview) -> None:
        if not self.open or self.closing:
            return
        allowance = self._frame_allowance
        if allowance is not None and self._over_frame_rate(allowance.take(self.loop.time()), data):
            return
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active and gateway.route_message(self, bytes(data)):
            return
        try:
            action = parse_client_frame(bytes(data), self.runtime.settings.limits)
        except ProtocolError as exc:
            self.runtime.counters.errors[WEBSOCKET, exc.code] += 1
            self.send(error_frame_for(exc))
            return
        if isinstance(action, Ping):
            self.send(pong_frame(action.request_id))
            return
        if isinstance(action, RefreshToken):
            self.runtime.clock.refresh(self, action)
            return
        self._inflight += 1
        if self._inflight >= MAX_INFLIGHT:
            self.hold_reading("inflight")
        self.runtime.track(self.loop.create_task(self._act(action)))

    async def _act(self, action: Action) -> None:
        """Carry out one action that awaits the store; answer with an ack or an error."""
        assert self.identity is not None
        counters = self.runtime.counters
        try:
            reply = await carry_out(self.node, self.runtime.throttle, self.identity, action)
        except TidingsError as exc:
            counters.errors[WEBSOCKET, exc.code] += 1
            self.send(error_frame(exc.code, exc.message, action.request_id))
        except Exception:
            counters.errors[WEBSOCKET, "internal"] += 1
            log.exception("action failed", extra={"conn": self.id, "user": self.user_id})
            self.send(error_frame("internal", "internal error", action.request_id))
        else:
            if type(action) is SendNotification:
                counters.acks += 1
            self.send(reply)
        finally:
            self._inflight -= 1
            if self._inflight < MAX_INFLIGHT // 2:
                self.release_reading("inflight")

    # -- frames out ----------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send one encoded JSON frame (a reply) to this connection only.

        Replies go out at the end of the loop iteration, all in one write: a
        group commit acks many sends at once, and a client with several in
        flight then gets their acks together. Frames written meanwhile queue
        behind them, so the order of frames never changes.
        """
        if self.transport is None or not self.open or self.closing:
            return
        self.write_frame(text_frame(payload))

    def write_frame(self, frame: bytes) -> None:
        """Queue a ready frame; every connection's queue leaves at the end of
        the loop iteration, in one write (see ``Outbox``)."""
        if self.transport is None or not self.open or self.closing:
            return
        pending = self._pending
        if pending is None:
            self._pending = [frame]
            due = self._due
            if not due:
                self.loop.call_soon(self.outbox.flush)
            due.append(self)
        else:
            pending.append(frame)

    def _write_pending(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._holding:
            self._hold(pending)
            return
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        self._check_backlog(transport)

    def _check_backlog(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size() + self._held.bytes > self._buffer_limit:
            self._slow_consumer()

    def _hold(self, frames: list[bytes]) -> None:
        """Keep frames until the transport has room (``resume_writing``)."""
        self._held.add(frames)
        assert self.transport is not None
        self._check_backlog(self.transport)

    @property
    def last_active(self) -> float:
        """Wall-clock time of the last bytes received from the client."""
        return time.time() - (self.loop.time() - self.last_seen)

    def pause_reading(self) -> None:
        self.hold_reading("drain")

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        await self._held.writable()

    def ping(self) -> None:
        if self.transport is not None and self.open and not self.closing:
            self.transport.write(PING)
            self.last_ping = self.loop.time()
