"""The handshake half of ``WebSocketConnection``: from the first bytes to open.

A plain, valid upgrade request (what clients send) is answered with a
prebuilt response; any other goes through python-websockets' sans-I/O
``ServerProtocol``, which validates it and answers its errors. Who may
connect is decided by ``handshake.admit``, which does no I/O; API Gateway
routes (``$connect``) may decide later, without blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.hooks import GatewayConnection
from tidings.node import Node
from tidings.web import handshake
from tidings.web.counters import INVALID_UPGRADE, ROUTE_REFUSED
from tidings.web.handshake import Admission, HandshakeRefused
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.ws")
protocol_log = logging.getLogger("tidings.ws.protocol")


class Handshaking:
    """Mixed into ``WebSocketConnection``, whose state it reads and sets."""

    if not TYPE_CHECKING:  # no dict of its own; mypy would check its assignments
        __slots__ = ()

    runtime: Runtime
    node: Node
    id: str
    peer: str
    source_ip: str
    ws: ServerProtocol | None
    transport: asyncio.Transport | None

    if TYPE_CHECKING:  # declared only: the connection defines them

        def _open(self, admission: Admission, user_agent: str) -> None: ...

        def _flush(self) -> None: ...

    def _protocol(self, state: State) -> ServerProtocol:
        return ServerProtocol(
            state=state, max_size=self.runtime.settings.max_frame_bytes, logger=protocol_log
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
        request = handshake.plain_upgrade(data)
        if request is None:
            return False
        path, headers = request
        try:
            admission = self._admit(path, headers)
        except HandshakeRefused as refusal:
            self.ws = self._protocol(State.CONNECTING)
            self._refuse(refusal.status, refusal.text, refusal.reason, refusal.retry_after)
            return True
        assert self.transport is not None
        self.ws = self._protocol(State.OPEN)
        self.transport.write(handshake.switching_protocols(headers["sec-websocket-key"]))
        self._open(admission, headers.get("user-agent", ""))
        return True

    def _handshake(self, request: Request) -> None:
        try:
            admission = self._admit(request.path, request.headers)
        except HandshakeRefused as refusal:
            self._refuse(refusal.status, refusal.text, refusal.reason, refusal.retry_after)
            return
        gateway = self.runtime.gateway
        if gateway is not None and gateway.active:
            # API Gateway routes: a $connect integration decides, later, without blocking.
            gateway.handshake(
                cast(GatewayConnection, self),  # the connection this is mixed into
                request,
                admission.identity,
                accept=lambda: self._accept(request, admission),
                refuse=lambda status, text: self._refuse(status, text, ROUTE_REFUSED),
            )
            return
        self._accept(request, admission)

    def _refuse(self, status: int, text: str, reason: str, retry_after: str | None = None) -> None:
        """Answer ``status`` with ``text``; ``reason`` is what the metrics count."""
        counters = self.runtime.counters
        counters.refusals[reason] += 1
        if reason == "too_many_connections":
            counters.limits["max_connections_per_user"] += 1
        log.info(
            "handshake refused",
            extra={"conn": self.id, "status": status, "reason": text, "peer": self.peer},
        )
        ws = self.ws
        assert ws is not None
        response = ws.reject(status, text + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="tidings"'
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        ws.send_response(response)
        self._flush()

    def _accept(self, request: Request, admission: Admission) -> bool:
        """Complete the handshake; whether the connection is now open."""
        ws = self.ws
        assert ws is not None
        response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            self.runtime.counters.refusals[INVALID_UPGRADE] += 1
            self._flush()
            return False
        self._open(admission, request.headers.get("User-Agent", ""))
        return True

    def _admit(self, path: str, headers: Mapping[str, str]) -> Admission:
        gateway = self.runtime.gateway
        admission = handshake.admit(
            path,
            headers,
            settings=self.runtime.settings,
            secret=self.runtime.secret,
            proxies=self.runtime.proxies,
            peer_ip=self.source_ip,
            draining=self.node.draining,
            connections_of=lambda user: len(self.node.hub.of_user(user)),
            also_serves=gateway.serves_websocket if gateway is not None else None,
            throttle=self.runtime.throttle.connect,
        )
        self.source_ip = admission.source_ip
        return admission
