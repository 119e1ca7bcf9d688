"""The WebSocket transport: an asyncio protocol that uvicorn hands upgrades to.

uvicorn parses HTTP and, on ``Upgrade: websocket``, gives this class the
socket and the request bytes. The handshake and incoming frames go through
python-websockets' sans-I/O ``ServerProtocol``; outgoing notification frames
bypass it: the hub writes ready-made bytes straight to the transport. Each
client message becomes at most one small task (a send awaiting its commit).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.core.cursor import StreamCursor
from tidings.core.errors import AuthError, BadRequest, ProtocolError, TidingsError
from tidings.core.inbox import check_topic
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
from tidings.core.tokens import Identity, verify
from tidings.web.frames import PING, text_frame
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.ws")
_protocol_log = logging.getLogger("tidings.ws.protocol")

CLOSE_GOING_AWAY_RESTART = 1012
CLOSE_SLOW_CONSUMER = 1008
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the client's close frame before dropping the socket."""
MAX_INFLIGHT = 64
"""Sends awaiting commit per connection before we stop reading from it."""
WS_PATH = "/ws"


class HandshakeRefused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


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
        self.ws = ServerProtocol(max_size=runtime.settings.max_frame_bytes, logger=_protocol_log)
        self.transport: asyncio.Transport | None = None
        self.id = self.node.new_connection_id()
        self.user_id = ""
        self.identity: Identity | None = None
        self.cursor = StreamCursor()
        self.topics: dict[str, StreamCursor] = {}
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
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._flush()

    def eof_received(self) -> bool | None:
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
            close = self.ws.close_rcvd or self.ws.close_sent
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

    def _handshake(self, request: Request) -> None:
        try:
            identity, since, topics = self._authenticate(request)
        except HandshakeRefused as refusal:
            self._refuse(refusal.status, refusal.text)
            return
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active:
            # API Gateway routes: a $connect integration decides, later, without blocking.
            gateway.handshake(
                self,
                request,
                identity,
                accept=lambda: self._accept(request, identity, since, topics),
                refuse=self._refuse,
            )
            return
        self._accept(request, identity, since, topics)

    def _refuse(self, status: int, text: str) -> None:
        log.info(
            "handshake refused",
            extra={"conn": self.id, "status": status, "reason": text, "peer": self.peer},
        )
        response = self.ws.reject(status, text + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="tidings"'
        self.ws.send_response(response)
        self._flush()

    def _accept(
        self, request: Request, identity: Identity, since: int | None, topics: dict[str, int] | None
    ) -> bool:
        """Complete the handshake; whether the connection is now open."""
        response = self.ws.accept(request)
        self.ws.send_response(response)
        if response.status_code != 101:
            self._flush()
            return False
        self.identity = identity
        self.user_id = identity.user_id
        self.user_agent = request.headers.get("User-Agent", "")
        self.open = True
        self.cursor = StreamCursor(since, syncing=since is not None)
        self._flush()
        log.info(
            "connected",
            extra={"conn": self.id, "user": self.user_id, "since": since, "peer": self.peer},
        )
        self.node.attach(self, since, topics)
        return True

    def _authenticate(self, request: Request) -> tuple[Identity, int | None, dict[str, int] | None]:
        settings = self.runtime.settings
        url = urlsplit(request.path)
        gateway = self.runtime.gateway
        if url.path.rstrip("/") != WS_PATH and not (gateway and gateway.serves_websocket(url.path)):
            raise HandshakeRefused(404, f"no WebSocket endpoint at {url.path!r}; use {WS_PATH}")
        if self.node.draining:
            raise HandshakeRefused(503, "server is draining; reconnect to another node")
        origin = request.headers.get("Origin")
        allowed = settings.allowed_origins
        if allowed and origin is not None and origin not in allowed and "*" not in allowed:
            raise HandshakeRefused(403, f"origin {origin!r} is not allowed")
        query = parse_qs(url.query)
        token = _first(query, "token")
        header = request.headers.get("Authorization")
        if token is None and header and header.lower().startswith("bearer "):
            token = header[7:].strip()
        if token is not None:
            try:
                identity = verify(self.runtime.secret, token)
            except AuthError as exc:
                raise HandshakeRefused(401, exc.message) from None
        else:
            user_id = _first(query, "userId")
            if user_id is None:
                raise HandshakeRefused(401, "missing token: pass ?token= or Authorization: Bearer")
            if not settings.allow_user_id:
                raise HandshakeRefused(
                    401, "?userId= without a token is refused (the server needs --allow-user-id)"
                )
            if (
                not 0 < len(user_id) <= settings.limits.max_user_id_chars
                or not user_id.isprintable()
            ):
                raise HandshakeRefused(400, "userId must be 1 to 256 printable characters")
            identity = Identity(user_id=user_id)
        since = _first(query, "since")
        since_seq: int | None = None
        if since is not None:
            if not since.isdigit():
                raise HandshakeRefused(400, f"since must be a non-negative integer, not {since!r}")
            since_seq = int(since)
        topics = _positions(_first(query, "topics"))
        if topics and since_seq is None:
            raise HandshakeRefused(400, "topics= resumes topics only together with since=")
        limit = settings.max_connections_per_user
        if limit and len(self.node.hub.of_user(identity.user_id)) >= limit:
            raise HandshakeRefused(429, f"too many connections for this user (limit {limit})")
        return identity, since_seq, topics

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
        """Send one encoded JSON frame to this connection only."""
        self.write_frame(text_frame(payload))

    def write_frame(self, frame: bytes) -> None:
        transport = self.transport
        if transport is None or not self.open or self.closing:
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self.runtime.settings.send_buffer_limit:
            log.warning("slow consumer disconnected", extra={"conn": self.id, "user": self.user_id})
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: send buffer limit exceeded")

    @property
    def last_active(self) -> float:
        """Wall-clock time of the last bytes received from the client."""
        return time.time() - (self.loop.time() - self.last_seen)

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
        self.closing = True
        self.node.detach(self)
        if self.ws.state is State.OPEN:
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
        if transport is None:
            return
        if self.open and not self.closing and self.ws.state is not State.OPEN:
            # The protocol closed on its own (client close, 1009, protocol error).
            self.closing = True
            self.node.detach(self)
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()
        if self.ws.close_expected() and self._close_timer is None:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)


def _positions(raw: str | None) -> dict[str, int] | None:
    """``news:5,everyone:12`` as {topic: seq}; refused with 400 when malformed."""
    if not raw:
        return None
    positions: dict[str, int] = {}
    for part in raw.split(","):
        topic, _, seq = part.rpartition(":")
        try:
            check_topic(topic)
        except BadRequest as exc:
            raise HandshakeRefused(400, f"topics: {exc.message}") from None
        if not seq.isdigit():
            raise HandshakeRefused(400, f"topics: {part!r} is not topic:seq")
        positions[topic] = int(seq)
    if len(positions) > 100:
        raise HandshakeRefused(400, "topics: at most 100 topics")
    return positions


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
