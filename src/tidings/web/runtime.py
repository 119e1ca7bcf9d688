"""What the transports share: the node, the settings, the signing keys, background tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tidings.config import Settings
from tidings.core.forwarded import TrustedProxies
from tidings.core.keys import Keys
from tidings.hooks import GatewayHooks
from tidings.node import Node
from tidings.web.counters import WebCounters
from tidings.web.expiry import TokenClock
from tidings.web.outbox import Outbox
from tidings.web.throttle import Throttle


@dataclass(slots=True)
class Runtime:
    node: Node
    settings: Settings
    keys: Keys
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    gateway: GatewayHooks | None = None
    """API Gateway routes and stage paths (``tidings.aws``); set by the app at start."""
    outbox: Outbox = field(default_factory=Outbox)
    """Connections with frames to write at the end of this loop iteration."""
    counters: WebCounters = field(default_factory=WebCounters)
    """What the transports count for the metrics."""
    proxies: TrustedProxies = field(init=False)
    """Whose X-Forwarded-For names a WebSocket client (``settings.forwarded_allow_ips``)."""
    throttle: Throttle = field(init=False)
    """The connection, publish and frame rates (``settings``), shared by the transports."""
    clock: TokenClock = field(init=False)
    """Every open connection's token countdown."""

    def __post_init__(self) -> None:
        self.proxies = TrustedProxies(self.settings.forwarded_allow_ips)
        self.throttle = Throttle(self.settings, refused=self.counters.limits)
        self.clock = TokenClock(
            notice=self.settings.token_expiry_notice, keys=self.keys, spawn=self.track
        )

    @property
    def secret(self) -> str:
        """The current signing secret (page cursors derive their key from it)."""
        return self.keys.current

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reference to a fire-and-forget task until it ends."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
