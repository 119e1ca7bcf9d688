"""Where the WebSocket transport and the API Gateway layer meet.

``web/`` and ``aws/`` never import each other: the transport calls a
``GatewayHooks`` (``aws.gateway.Gateway``, handed in by the composition root)
with itself as a ``GatewayConnection``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from websockets.http11 import Request

from tidings.core.tokens import Identity


class GatewayConnection(Protocol):
    """What API Gateway routes use of a WebSocket connection."""

    id: str
    connected_at: float
    source_ip: str
    transport: asyncio.Transport | None
    """None until the socket is made; closing once the close has begun."""

    def send(self, payload: bytes) -> None: ...

    def write_frame(self, frame: bytes) -> None: ...

    def hold_reading(self, reason: str) -> None: ...

    def release_reading(self, *reasons: str) -> None: ...


class GatewayHooks(Protocol):
    """What the WebSocket transport calls when API Gateway routes are configured
    (``tidings.aws.gateway.Gateway``, handed in by the composition root)."""

    active: bool
    """Routes are configured: the transport must call the hooks."""

    def serves_websocket(self, path: str) -> bool:
        """Whether ``path`` is a WebSocket path besides ``/ws`` (the stage's)."""
        ...

    def handshake(
        self,
        conn: GatewayConnection,
        request: Request,
        identity: Identity,
        *,
        accept: Callable[[str | None], bool],
        refuse: Callable[[int, str], None],
    ) -> None:
        """Accept now, or once ``$connect`` says yes (``accept``, with the
        subprotocol its answer chose, if any), or ``refuse``."""

    def route_message(self, conn: GatewayConnection, data: bytes) -> bool:
        """Hand a message to its route; False when tidings answers it itself."""
        ...

    def disconnected(self, conn: GatewayConnection, code: int, reason: str) -> None: ...
