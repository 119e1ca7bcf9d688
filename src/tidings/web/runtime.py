"""What the transports share: the node, the settings, the secret, background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from websockets.http11 import Request

from tidings.config import Settings
from tidings.core.forwarded import TrustedProxies
from tidings.core.tokens import Identity
from tidings.node import Node
from tidings.web.outbox import Outbox


class GatewayConnection(Protocol):
    """What API Gateway routes use of a WebSocket connection."""

    id: str
    connected_at: float
    source_ip: str
    transport: asyncio.Transport | None

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
        accept: Callable[[], bool],
        refuse: Callable[[int, str], None],
    ) -> None:
        """Accept now, or once ``$connect`` says yes (``accept``), or ``refuse``."""

    def route_message(self, conn: GatewayConnection, data: bytes) -> bool:
        """Hand a message to its route; False when tidings answers it itself."""
        ...

    def disconnected(self, conn: GatewayConnection, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class Runtime:
    node: Node
    settings: Settings
    secret: str
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    gateway: GatewayHooks | None = None
    """API Gateway routes and stage paths (``tidings.aws``); set by the app at start."""
    outbox: Outbox = field(default_factory=Outbox)
    """Connections with frames to write at the end of this loop iteration."""
    proxies: TrustedProxies = field(init=False)
    """Whose X-Forwarded-For names a WebSocket client (``settings.forwarded_allow_ips``)."""

    def __post_init__(self) -> None:
        self.proxies = TrustedProxies(self.settings.forwarded_allow_ips)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reference to a fire-and-forget task until it ends."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
