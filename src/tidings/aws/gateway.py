"""The route table at work on live connections: what API Gateway does between a
client and its integrations.

The WebSocket transport calls three hooks: ``handshake`` once a client is
authenticated (with a ``$connect`` route, accepting or refusing waits for the
integration's answer while reading from that socket is paused; the event loop
never blocks), ``route_message`` for every message (True: a route took it),
and ``disconnected`` when an open connection closes, for whatever reason
(client, server, drain, dead peer). ``close`` ends it all at shutdown, after
the ``$disconnect`` calls still running have had a bounded time to finish.

Guarantees: a client whose message route fails gets API Gateway's error frame
and its connection stays open; every connection that was accepted gets
exactly one ``$disconnect`` call, retried with backoff up to
``DISCONNECT_ATTEMPTS`` times (then logged and dropped: API Gateway calls it
best-effort too); the ``@connections`` API finds a connection only once its
``$connect`` said yes, never during the call (410, as on API Gateway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from websockets.http11 import Request

from tidings.aws.events import (
    ConnectionContext,
    connect_event,
    disconnect_event,
    error_frame,
    message_event,
    new_id,
    now_ms,
)
from tidings.aws.integration import IntegrationFailed, Integrations, describe
from tidings.aws.routes import CONNECT, DISCONNECT, Route
from tidings.aws.settings import GatewaySettings
from tidings.core.errors import InvalidRoute, ProtocolError
from tidings.core.frames import binary_frame
from tidings.core.protocol import parse_client_frame
from tidings.core.tokens import Identity
from tidings.hooks import GatewayConnection as Connection

log = logging.getLogger("tidings.aws")

DISCONNECT_ATTEMPTS = 4
"""Calls of a failing ``$disconnect`` integration before the event is dropped."""
DISCONNECT_BACKOFF = 0.5
"""Seconds before the first retry; doubled for each one after."""
MAX_PENDING = 64
"""Messages of one connection waiting for their integrations before reading pauses."""
CLOSE_WAIT = 10.0
"""Seconds shutdown waits for ``$disconnect`` calls still running."""
INTERNAL_ERROR = "Internal server error"
TIMED_OUT = "Endpoint request timed out"
ABNORMAL_CLOSURE = 1006


def is_builtin(action: str) -> bool:
    """Whether tidings has its own action called ``action`` (sendNotification, ping, ...)."""
    try:
        parse_client_frame(orjson.dumps({"action": action}))
    except InvalidRoute:
        return False
    except ProtocolError:
        return True
    return True


def _alive(conn: Connection) -> bool:
    return conn.transport is not None and not conn.transport.is_closing()


class Gateway:
    def __init__(
        self, settings: GatewaySettings, *, integrations: Integrations | None = None
    ) -> None:
        self.settings = settings
        self.table = settings.routes
        self.active = bool(self.table)
        """Routes are configured: the WebSocket transport must call the hooks."""
        self._integrations = integrations
        self._contexts: dict[str, ConnectionContext] = {}
        self._pending: dict[str, int] = {}
        self._paused: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._disconnects: set[asyncio.Task[None]] = set()
        stage = settings.stage_name
        self.websocket_paths = frozenset({f"/{stage}", f"/{stage}/ws"})
        """Served besides ``/ws``: the seed's clients connect to ``wss://host/{stage}``."""

    @property
    def integrations(self) -> Integrations:
        if self._integrations is None:
            self._integrations = Integrations(timeout=self.settings.integration_timeout)
        return self._integrations

    def serves_websocket(self, path: str) -> bool:
        return unquote(path).rstrip("/") in self.websocket_paths

    # -- hooks ---------------------------------------------------------------

    def handshake(
        self,
        conn: Connection,
        request: Request,
        identity: Identity,
        *,
        accept: Callable[[str | None], bool],
        refuse: Callable[[int, str], None],
    ) -> None:
        """An authenticated handshake: accept now, or once ``$connect`` says yes.

        ``accept(subprotocol)`` completes the handshake, answering the
        ``Sec-WebSocket-Protocol`` header of the integration's answer if it
        has one (as API Gateway does), and says whether the connection
        opened; ``refuse(status, text)`` answers with an HTTP status instead.
        """
        ctx = self._context(conn, request, identity)
        route = self.table.get(CONNECT)
        if route is None:
            self._contexts[conn.id] = ctx
            if not accept(None):
                self._contexts.pop(conn.id, None)
            return
        conn.hold_reading("$connect")
        self._spawn(self._connect(conn, ctx, route, accept, refuse))

    def route_message(self, conn: Connection, data: bytes) -> bool:
        """Hand a message to the route that takes it; False when tidings answers it itself."""
        ctx = self._contexts.get(conn.id)
        if ctx is None:
            return False
        route = self.table.for_message(data, is_builtin)
        if route is None:
            return False
        pending = self._pending.get(conn.id, 0) + 1
        self._pending[conn.id] = pending
        if pending >= MAX_PENDING and conn.id not in self._paused:
            conn.hold_reading("routes")
            self._paused.add(conn.id)
        self._spawn(self._message(conn, ctx, route, data))
        return True

    def disconnected(self, conn: Connection, code: int, reason: str) -> None:
        """An open connection closed; ``code`` is 1006 when no close frame was exchanged."""
        ctx = self._contexts.pop(conn.id, None)
        self._pending.pop(conn.id, None)
        self._paused.discard(conn.id)
        if ctx is not None:
            self._post_disconnect(ctx, code, reason)

    async def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Cancel message calls, let ``$disconnect`` calls finish (bounded), close the client."""
        for task in list(self._tasks):
            task.cancel()
        if self._disconnects:
            _, late = await asyncio.wait(self._disconnects, timeout=timeout)
            if late:
                log.error("$disconnect calls dropped at shutdown", extra={"count": len(late)})
                for task in late:
                    task.cancel()
        if self._integrations is not None:
            await self._integrations.close()

    # -- the calls -----------------------------------------------------------

    async def _connect(
        self,
        conn: Connection,
        ctx: ConnectionContext,
        route: Route,
        accept: Callable[[str | None], bool],
        refuse: Callable[[int, str], None],
    ) -> None:
        request_id = new_id()
        fields = {"conn": ctx.connection_id, "route": route.key, "requestId": request_id}
        try:
            answer = await self.integrations.invoke(
                route, connect_event(ctx, request_id=request_id, at=now_ms())
            )
        except IntegrationFailed as exc:
            log.error("$connect integration failed", extra={**fields, **describe(exc)})
            if _alive(conn):
                if exc.timed_out:
                    refuse(504, TIMED_OUT)
                else:
                    refuse(500, INTERNAL_ERROR)
            return
        except Exception as exc:
            log.exception("$connect failed", extra={**fields, **describe(exc)})
            if _alive(conn):
                refuse(500, INTERNAL_ERROR)
            return
        status = answer.status_code
        if not 200 <= status < 300:
            log.info("$connect refused by its integration", extra={**fields, "status": status})
            if _alive(conn):
                text = (_text(answer.body) or "").strip()[:1024]
                refuse(status, text or f"refused by the $connect route ({status})")
            return
        if not _alive(conn):
            log.info("client left during $connect", extra=fields)
            self._post_disconnect(ctx, ABNORMAL_CLOSURE, "")
            return
        self._contexts[conn.id] = ctx
        if not accept(answer.header("sec-websocket-protocol")):
            self._contexts.pop(conn.id, None)
            self._post_disconnect(ctx, ABNORMAL_CLOSURE, "")
            return
        conn.release_reading("$connect")

    async def _message(
        self, conn: Connection, ctx: ConnectionContext, route: Route, data: bytes
    ) -> None:
        request_id = new_id()
        event = message_event(
            ctx, route.key, data, request_id=request_id, message_id=new_id(), at=now_ms()
        )
        try:
            answer = await self.integrations.invoke(route, event)
        except Exception as exc:
            timed_out = isinstance(exc, IntegrationFailed) and exc.timed_out
            log.error(
                "integration failed",
                extra={
                    "conn": ctx.connection_id,
                    "route": route.key,
                    "requestId": request_id,
                    **describe(exc),
                },
            )
            message = TIMED_OUT if timed_out else INTERNAL_ERROR
            conn.send(error_frame(message, ctx.connection_id, request_id))
            return
        finally:
            self._done(conn)
        if route.two_way and answer.body is not None:
            text = _text(answer.body)
            if text is not None:
                conn.send(answer.body)
            else:
                conn.write_frame(binary_frame(answer.body))

    def _done(self, conn: Connection) -> None:
        pending = self._pending.get(conn.id)
        if pending is None:
            return
        self._pending[conn.id] = pending - 1
        if conn.id in self._paused and pending - 1 < MAX_PENDING // 2:
            self._paused.discard(conn.id)
            conn.release_reading("routes")

    def _post_disconnect(self, ctx: ConnectionContext, code: int, reason: str) -> None:
        route = self.table.get(DISCONNECT)
        if route is None:
            return
        task = asyncio.get_running_loop().create_task(self._disconnect(ctx, route, code, reason))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def _disconnect(
        self, ctx: ConnectionContext, route: Route, code: int, reason: str
    ) -> None:
        request_id = new_id()
        event = disconnect_event(ctx, code, reason, request_id=request_id, at=now_ms())
        fields = {"conn": ctx.connection_id, "route": route.key, "requestId": request_id}
        for attempt in range(1, DISCONNECT_ATTEMPTS + 1):
            try:
                await self.integrations.invoke(route, event)
                return
            except Exception as exc:
                if attempt == DISCONNECT_ATTEMPTS:
                    log.error(
                        "$disconnect integration failed; event dropped",
                        extra={**fields, "attempts": attempt, **describe(exc)},
                    )
                    return
                delay = DISCONNECT_BACKOFF * 2 ** (attempt - 1)
                log.warning(
                    "$disconnect integration failed; retrying",
                    extra={**fields, "attempt": attempt, "retryIn": delay, **describe(exc)},
                )
                await asyncio.sleep(delay)

    # -- helpers -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _context(self, conn: Connection, request: Request, identity: Identity) -> ConnectionContext:
        headers = list(request.headers.raw_items())
        host = request.headers.get("Host", "")
        return ConnectionContext.of_handshake(
            connection_id=conn.id,
            connected_at=int(conn.connected_at * 1000),
            domain_name=self.settings.domain_name or host or "localhost",
            stage=self.settings.stage_name,
            api_id=self.settings.api_id,
            source_ip=conn.source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            principal_id=identity.user_id,
            admin=identity.admin,
            headers=headers,
            query=parse_qsl(urlsplit(request.path).query, keep_blank_values=True),
        )


def _text(body: bytes | None) -> str | None:
    if body is None:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None
