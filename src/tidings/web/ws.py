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
import email.utils
import functools
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from tidings.core.cursor import StreamCursor
from tidings.core.errors import ProtocolError, TidingsError
from tidings.core.frames import PING, text_frame
from tidings.core.protocol import (
    MarkAction,
    Ping,
    SendNotification,
    SubscribeAction,
    ack_frame,
    error_frame,
    error_frame_for,
    parse_client_frame,
    pong_frame,
    reply_frame,
)
from tidings.core.tokens import Identity
from tidings.web.handshake import Admission, HandshakeRefused, admit, plain_upgrade
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.ws")
_protocol_log = logging.getLogger("tidings.ws.protocol")

CLOSE_GOING_AWAY_RESTART = 1012
CLOSE_SLOW_CONSUMER = 1008
SLOW_CONSUMER_REASON = "slow consumer: send buffer limit exceeded; reconnect with since"
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the client's close frame before dropping the socket."""
SLOW_CONSUMER_LINGER = 30.0
"""Seconds a dropped slow consumer's socket is kept so that its close frame
reaches it when it reads again. Its queued frames are dropped first, so this
costs at most the transport's high-water mark (64 KiB) per connection."""
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
PUSH_BYTES = 64 * 1024
"""Held frames handed to the transport in one write once it has room."""
NO_HOLDS: frozenset[str] = frozenset()


class WebSocketConnection(asyncio.Protocol):
    """One client: handshake, then frames in and ready-made frames out."""

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
        self._fragments: list[bytes] = []
        self._max_fragments = runtime.settings.max_fragments
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
        self._read_holds = NO_HOLDS
        """Why reading is paused (``hold_reading``); it resumes when none is left."""
        self._held: deque[bytes] | None = None
        """Frames waiting, in order, while the transport is over its high-water
        mark; None once it took them all. Kept out of the transport so that
        they can still be dropped."""
        self._held_bytes = 0
        self._write_paused = False
        self._writable: asyncio.Event | None = None
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
        self._held = None
        self._held_bytes = 0
        if self._writable is not None:
            self._writable.set()
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
        self._write_paused = True
        if self._held is None:
            self._held = deque()
        if self._writable is None:
            self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._push_held()

    # -- handshake -----------------------------------------------------------

    def _protocol(self, state: State) -> ServerProtocol:
        return ServerProtocol(
            state=state, max_size=self.runtime.settings.max_frame_bytes, logger=_protocol_log
        )

    def _plain_handshake(self, data: bytes) -> bool:
        """Answer a plain upgrade request here; False: leave it to ``ServerProtocol``.

        Same checks and same response as python-websockets (no extension or
        subprotocol is ever negotiated), without parsing the request a second
        time in Python, building response objects or formatting the date for
        each client. A refused handshake is answered as on the other path.
        """
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active:
            return False
        request = plain_upgrade(data)
        if request is None:
            return False
        path, headers = request
        try:
            admission = self._admit(path, headers)
        except HandshakeRefused as refusal:
            self.ws = self._protocol(State.CONNECTING)
            self._refuse(refusal.status, refusal.text)
            return True
        assert self.transport is not None
        self.ws = self._protocol(State.OPEN)
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nDate: %s\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
            % (_http_date(int(time.time())), accept_key(headers["sec-websocket-key"]).encode())
        )
        self._open(admission, headers.get("user-agent", ""))
        return True

    def _handshake(self, request: Request) -> None:
        try:
            admission = self._admit(request.path, request.headers)
        except HandshakeRefused as refusal:
            self._refuse(refusal.status, refusal.text)
            return
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active:
            # API Gateway routes: a $connect integration decides, later, without blocking.
            gateway.handshake(
                self,
                request,
                admission.identity,
                accept=lambda: self._accept(request, admission),
                refuse=self._refuse,
            )
            return
        self._accept(request, admission)

    def _refuse(self, status: int, text: str) -> None:
        log.info(
            "handshake refused",
            extra={"conn": self.id, "status": status, "reason": text, "peer": self.peer},
        )
        ws = self.ws
        assert ws is not None
        response = ws.reject(status, text + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="tidings"'
        ws.send_response(response)
        self._flush()

    def _accept(self, request: Request, admission: Admission) -> bool:
        """Complete the handshake; whether the connection is now open."""
        ws = self.ws
        assert ws is not None
        response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            self._flush()
            return False
        self._open(admission, request.headers.get("User-Agent", ""))
        return True

    def _open(self, admission: Admission, user_agent: str) -> None:
        """The handshake response is on its way: join the node."""
        identity, since, topics = admission.identity, admission.since, admission.topics
        self.identity = identity
        self.user_id = identity.user_id
        self.user_agent = user_agent
        self.open = True
        self._flush()
        log.info(
            "connected",
            extra={"conn": self.id, "user": self.user_id, "since": since, "peer": self.peer},
        )
        self.node.attach(self, since, topics)

    def _admit(self, path: str, headers: Mapping[str, str]) -> Admission:
        gateway = self.runtime.gateway
        admission = admit(
            path,
            headers,
            settings=self.runtime.settings,
            secret=self.runtime.secret,
            proxies=self.runtime.proxies,
            peer_ip=self.source_ip,
            draining=self.node.draining,
            connections_of=lambda user: len(self.node.hub.of_user(user)),
            also_serves=gateway.serves_websocket if gateway is not None else None,
        )
        self.source_ip = admission.source_ip
        return admission

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

    def hold_reading(self, reason: str) -> None:
        """Read nothing more from the client until ``release_reading(reason)``.

        Several reasons can hold reading at once (sends awaiting commit, a
        read still being parsed, a drain, the API Gateway routes' backlog);
        reading resumes only when the last one is released.
        """
        transport = self.transport
        if not self._read_holds and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._read_holds = self._read_holds | {reason}

    def release_reading(self, *reasons: str) -> None:
        if self._read_holds.isdisjoint(reasons):
            return
        self._read_holds = self._read_holds.difference(reasons) or NO_HOLDS
        transport = self.transport
        if not self._read_holds and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _on_frame(self, frame: Frame) -> None:
        if self.closing:
            return
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(frame.data)
            else:
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            fragments = self._fragments
            if len(fragments) >= self._max_fragments:
                self._too_many_fragments()
                return
            fragments.append(bytes(frame.data))
            if frame.fin:
                self._fragments = []
                self._on_message(b"".join(fragments))

    def _too_many_fragments(self) -> None:
        """Close with 1009: a message in more frames than ``--max-fragments``."""
        limit = self._max_fragments
        log.warning(
            "message in too many fragments",
            extra={"conn": self.id, "user": self.user_id, "code": 1009, "limit": limit},
        )
        self._fragments = []
        if self.open and not self.closing:
            self.closing = True
            self.node.detach(self)
        assert self.ws is not None
        self.ws.fail(CloseCode.MESSAGE_TOO_BIG, f"message too big: more than {limit} fragments")

    def _on_message(self, data: bytes | bytearray | memoryview) -> None:
        if not self.open or self.closing:
            return
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active and gateway.route_message(self, bytes(data)):
            return
        try:
            action = parse_client_frame(bytes(data), self.runtime.settings.limits)
        except ProtocolError as exc:
            self.send(error_frame_for(exc))
            return
        if isinstance(action, Ping):
            self.send(pong_frame(action.request_id))
            return
        self._inflight += 1
        if self._inflight >= MAX_INFLIGHT:
            self.hold_reading("inflight")
        self.runtime.track(self.loop.create_task(self._act(action)))

    async def _act(self, action: SendNotification | MarkAction | SubscribeAction) -> None:
        """Carry out one action that awaits the store; answer with an ack or an error."""
        assert self.identity is not None
        try:
            if isinstance(action, SendNotification):
                result = await self.node.send(self.identity, action)
                reply = ack_frame(action.request_id, result.id, result.seqs[0][1])
            elif isinstance(action, SubscribeAction):
                if action.subscribe:
                    starts = await self.node.subscribe([self.user_id], action.topic)
                    seq = starts[self.user_id]
                else:
                    await self.node.unsubscribe(self.user_id, action.topic)
                    seq = 0
                reply = reply_frame(action.request_id, topic=action.topic, seq=seq)
            else:
                changed, _ = await self.node.mark(self.user_id, action.mark)
                reply = reply_frame(action.request_id, changed=len(changed))
        except TidingsError as exc:
            self.send(error_frame(exc.code, exc.message, action.request_id))
        except Exception:
            log.exception("action failed", extra={"conn": self.id, "user": self.user_id})
            self.send(error_frame("internal", "internal error", action.request_id))
        else:
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
        if self._held is not None:
            self._hold(pending)
            return
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        self._check_backlog(transport)

    def _check_backlog(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size() + self._held_bytes > self._buffer_limit:
            self._slow_consumer()

    def _hold(self, frames: list[bytes]) -> None:
        """Keep frames until the transport has room (``resume_writing``)."""
        held, transport = self._held, self.transport
        assert held is not None and transport is not None
        held.extend(frames)
        self._held_bytes += sum(map(len, frames))
        self._check_backlog(transport)

    def _push_held(self) -> None:
        """Hand held frames to the transport until it is full again; all gone: writable."""
        held, transport = self._held, self.transport
        if held is None or transport is None or transport.is_closing():
            return
        while held and not self._write_paused:
            batch = [held.popleft()]
            size = len(batch[0])
            while held and size < PUSH_BYTES:
                batch.append(held.popleft())
                size += len(batch[-1])
            self._held_bytes -= size
            transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        if not held and not self._write_paused:
            self._writable_again()

    def _release_held(self) -> None:
        """Everything held goes to the transport now (before a close frame)."""
        held, transport = self._held, self.transport
        if held and transport is not None and not transport.is_closing():
            transport.write(b"".join(held))
        self._writable_again()

    def _writable_again(self) -> None:
        self._held = None
        self._held_bytes = 0
        if self._writable is not None:
            self._writable.set()
            self._writable = None

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
        dropped = self._held_bytes
        self._pending = None
        self._writable_again()
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

    @property
    def last_active(self) -> float:
        """Wall-clock time of the last bytes received from the client."""
        return time.time() - (self.loop.time() - self.last_seen)

    def pause_reading(self) -> None:
        self.hold_reading("drain")

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if self._writable is not None:
            await self._writable.wait()

    def ping(self) -> None:
        if self.transport is not None and self.open and not self.closing:
            self.transport.write(PING)
            self.last_ping = self.loop.time()

    def close(self, code: int, reason: str, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Start the closing handshake; drop the socket if the client does not
        answer within ``timeout`` seconds."""
        if not self.open or self.closing:
            return
        self._write_pending()
        if self.closing:  # the backlog was too big: closing already
            return
        self._release_held()
        self.closing = True
        self.node.detach(self)
        if self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
        self._flush()
        # Reading may have been paused (drain, backpressure): the client's
        # close frame must get through. Messages after this are ignored; a
        # read still being parsed resumes reading once parsed.
        self.release_reading(*(self._read_holds - {"parse"}))
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
            self.node.detach(self)
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


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> bytes:
    """The ``Date`` header value for a Unix second (the same for every client in it)."""
    return email.utils.formatdate(second, usegmt=True).encode()
