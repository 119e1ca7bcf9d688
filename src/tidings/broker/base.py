"""The broker interface: moves publications between nodes.

Guarantee: at most once, in no promised order. A publication may be lost
(the broker restarts) or arrive out of order between publishers; the node
makes delivery exactly-once and ordered by checking each frame's seq and
repairing gaps from the store. A broker never touches client connections: it
hands what it receives to the handler the node registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from tidings.core.models import Publication

Handler = Callable[[Publication], None]
"""Called on the event loop for every publication received."""

StateHandler = Callable[[bool], None]
"""Called with False when the broker link is lost and True when it is back;
after True, the node repairs what may have been missed meanwhile."""


class Broker(Protocol):
    published: int
    """Publications sent to the other nodes since start (for metrics)."""
    received: int
    """Publications received and handed to the node since start (for metrics)."""

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        """Connect and begin delivering publications to ``on_publication``. A
        server that cannot be reached now is not an error: ``on_state(False)``,
        then ``on_state(True)`` once it is."""

    async def stop(self) -> None: ...

    async def publish(self, publications: Sequence[Publication]) -> None:
        """Send to every node, this one included. Raises ``Unavailable`` when down:
        the notifications are stored already, so the caller logs and goes on."""

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the broker link is up."""
