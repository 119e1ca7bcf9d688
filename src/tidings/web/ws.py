"""The WebSocket transport: an asyncio protocol that uvicorn hands upgrades to.

uvicorn parses HTTP and, on ``Upgrade: websocket``, gives this class the
socket and the request bytes. A plain, valid upgrade request (what clients
send) is answered here with a prebuilt response; any other request goes
through python-websockets' sans-I/O ``ServerProtocol``, which validates it and
answers with its own errors. Incoming frames go through ``ServerProtocol``
too; outgoing notification frames bypass it: the hub writes ready-made bytes
straight to the transport. Each client message becomes at most one small
task (a send awaiting its commit).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from tidings.core.cursor import StreamCursor
from tidings.core.errors import ProtocolError, TidingsError
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
from tidings.web.frames import PING, text_frame
from tidings.web.handshake import Admission, HandshakeRefused, admit, plain_upgrade
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.ws")
_protocol_log = logging.getLogger("tidings.ws.protocol")

CLOSE_GOING_AWAY_RESTART = 1012
CLOSE_SLOW_CONSUMER = 1008
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the client's close frame before dropping the socket."""
MAX_INFLIGHT = 64
"""Sends awaiting commit per connection before we stop reading from it."""


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
        self._pending: list[bytes] | None = None
        """Frames waiting for the end of this loop iteration (after a reply), in order."""
        self._buffer_limit = runtime.settings.send_buffer_limit
        self.outbox = runtime.outbox
        self._due = runtime.outbox.due
        """Bytes the transport may hold for this client before it counts as slow."""
        self._inflight = 0
        self._reading_paused = False
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
        ws = self.ws
        if ws is None:
            if self._plain_handshake(data):
                return
            ws = self.ws = self._protocol(State.CONNECTING)
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._flush()

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
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

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

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(frame.data)
            else:
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                message = b"".join(self._fragments)
                self._fragments = []
                self._on_message(message)

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
        if self._inflight >= MAX_INFLIGHT and not self._reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._reading_paused = True
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
            if self._reading_paused and self._inflight < MAX_INFLIGHT // 2:
                self._reading_paused = False
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.resume_reading()

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
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        self._check_backlog(transport)

    def _check_backlog(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size() > self._buffer_limit:
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        log.warning("slow consumer disconnected", extra={"conn": self.id, "user": self.user_id})
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer: send buffer limit exceeded")

    @property
    def last_active(self) -> float:
        """Wall-clock time of the last bytes received from the client."""
        return time.time() - (self.loop.time() - self.last_seen)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if self._writable is not None:
            await self._writable.wait()

    def ping(self) -> None:
        if self.transport is not None and self.open and not self.closing:
            self.transport.write(PING)
            self.last_ping = self.loop.time()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; drop the socket if the client does not answer."""
        if not self.open or self.closing:
            return
        self._write_pending()
        if self.closing:  # the backlog was too big: closing already
            return
        self.closing = True
        self.node.detach(self)
        if self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            # Reading may have been paused (drain, backpressure): the client's
            # close frame must get through. Messages after this are ignored.
            self.transport.resume_reading()
        self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

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
            else:
                transport.close()
        if ws.close_expected() and self._close_timer is None:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> bytes:
    """The ``Date`` header value for a Unix second (the same for every client in it)."""
    return email.utils.formatdate(second, usegmt=True).encode()
