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
from tidings.web.handshake import Admission, HandshakeRefused, KeyNotFetched
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

        def hold_reading(self, reason: str) -> None: ...

        def release_reading(self, *reasons: str) -> None: ...

        def _flush(self) -> None: ...

    def _protocol(self, state: State) -> ServerProtocol:
        return ServerProtocol(
            state=state, max_size=self.runtime.settings.max_frame_bytes, logger=protocol_log
        )

    def _plain_handshake(self, data: bytes) -> bool:
        """Answer a plain upgrade request here; False: leave it to ``ServerProtocol``.

        Same checks and same response as python-websockets (no extension is
        ever negotiated; the subprotocol is admission's), without parsing the
        request a second time in Python, building response objects or
        formatting the date for each client. A refused handshake is answered
        as on the other path; one that waits for keys is parsed there.
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
        except KeyNotFetched as refusal:
            self.ws = self._protocol(State.CONNECTING)
            self.ws.receive_data(data)  # the request, parsed there, waits with the keys
            parsed = [event for event in self.ws.events_received() if isinstance(event, Request)]
            self._after_keys(parsed[0], refusal.kid)
            return True
        except HandshakeRefused as refusal:
            self.ws = self._protocol(State.CONNECTING)
            self._refuse(refusal.status, refusal.text, refusal.reason, refusal.retry_after)
            return True
        assert self.transport is not None
        self.ws = self._protocol(State.OPEN)
        self.transport.write(
            handshake.switching_protocols(headers["sec-websocket-key"], admission.subprotocol)
        )
        self._open(admission, headers.get("user-agent", ""))
        return True

    def _handshake(self, request: Request, *, refetched: bool = False) -> None:
        try:
            admission = self._admit(request.path, request.headers, again=refetched)
        except KeyNotFetched as refusal:
            if refetched:
                self._refuse(refusal.status, refusal.text, refusal.reason)
            else:
                self._after_keys(request, refusal.kid)
            return
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
                accept=lambda chosen: self._accept(request, admission, chosen),
                refuse=lambda status, text: self._refuse(status, text, ROUTE_REFUSED),
            )
            return
        self._accept(request, admission)

    def _after_keys(self, request: Request, kid: str | None) -> None:
        """Fetch the provider's keys (a kid not seen yet), then decide again;
        reading waits meanwhile, the event loop does not."""
        refresher = self.runtime.keys.refresher
        assert refresher is not None
        self.hold_reading("keys")

        async def fetch_then_admit() -> None:
            try:
                await refresher.refresh(kid)
            finally:  # decided either way: the token is checked again
                if self.transport is not None and not self.transport.is_closing():
                    self.release_reading("keys")
                    self._handshake(request, refetched=True)

        self.runtime.track(asyncio.get_running_loop().create_task(fetch_then_admit()))

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

    def _accept(self, request: Request, admission: Admission, chosen: str | None = None) -> bool:
        """Complete the handshake, answering subprotocol ``chosen`` (a ``$connect``
        integration's) or else admission's; whether the connection is now open."""
        ws = self.ws
        assert ws is not None
        response = ws.accept(request)
        subprotocol = chosen or admission.subprotocol
        if subprotocol and response.status_code == 101:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        ws.send_response(response)
        if response.status_code != 101:
            self.runtime.counters.refusals[INVALID_UPGRADE] += 1
            self._flush()
            return False
        self._open(admission, request.headers.get("User-Agent", ""))
        return True

    def _admit(self, path: str, headers: Mapping[str, str], *, again: bool = False) -> Admission:
        """``again``: admitted once already (it waited for keys), so the
        connection rates counted it already."""
        gateway = self.runtime.gateway
        admission = handshake.admit(
            path,
            headers,
            settings=self.runtime.settings,
            keys=self.runtime.keys,
            proxies=self.runtime.proxies,
            peer_ip=self.source_ip,
            draining=self.node.draining,
            connections_of=lambda user: len(self.node.hub.of_user(user)),
            also_serves=gateway.serves_websocket if gateway is not None else None,
            throttle=None if again else self.runtime.throttle.connect,
        )
        self.source_ip = admission.source_ip
        return admission
