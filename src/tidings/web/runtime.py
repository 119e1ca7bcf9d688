"""What the transports share: the node, the settings, the secret, background tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tidings.config import Settings
from tidings.node import Node


@dataclass(slots=True)
class Runtime:
    node: Node
    settings: Settings
    secret: str
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reference to a fire-and-forget task until it ends."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
