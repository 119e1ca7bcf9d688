"""The in-process broker: one node, publications handed straight to the hub."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.broker.base import Handler, StateHandler
from tidings.core.models import Publication


class MemoryBroker:
    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        self._handler = on_publication

    async def stop(self) -> None:
        self._handler = None

    async def publish(self, publications: Sequence[Publication]) -> None:
        handler = self._handler
        if handler is not None:
            for publication in publications:
                handler(publication)

    async def ping(self) -> None:
        return None
