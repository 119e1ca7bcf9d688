"""One node in one process: the broker hands publications straight to the hub,
and the cluster is the hub itself (no registry to keep)."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.broker import local
from tidings.broker.base import Handler, StateHandler
from tidings.broker.cluster import ConnectionInfo, Members, NodeLoad, Presence
from tidings.core.models import Publication


class MemoryBroker:
    def __init__(self) -> None:
        self._handler: Handler | None = None
        self.published = 0
        self.received = 0

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        self._handler = on_publication

    async def stop(self) -> None:
        self._handler = None

    async def publish(self, publications: Sequence[Publication]) -> None:
        handler = self._handler
        if handler is not None:
            self.published += len(publications)
            self.received += len(publications)
            for publication in publications:
                handler(publication)

    async def ping(self) -> None:
        return None


class LocalCluster:
    """Every connection is on this node: a connection id of another cannot exist."""

    def __init__(self, members: Members, node_id: str) -> None:
        self.members = members
        self.node_id = node_id

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def presence(self, user_id: str) -> Presence:
        return Presence(user_id, tuple(local.local_ids(self.members, user_id)))

    async def nodes(self) -> list[NodeLoad]:
        return [local.load(self.members, self.node_id)]

    async def describe(self, connection_id: str) -> ConnectionInfo:
        return local.describe(self.members, connection_id)

    async def post(self, connection_id: str, data: bytes) -> None:
        local.post(self.members, connection_id, data)

    async def disconnect(self, connection_id: str) -> None:
        local.disconnect(self.members, connection_id)
