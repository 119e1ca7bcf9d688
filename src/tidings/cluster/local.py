"""This node's side of the cluster: acting on its own connections.

``LocalCluster`` is the whole cluster of a single node (the in-process
broker): presence is the hub, and a connection id of another node cannot
exist. The functions below are also what a ``RedisCluster`` node runs when
another node routes a call to it.
"""

from __future__ import annotations

import time

from tidings.cluster.base import ConnectionInfo, Gone, Presence
from tidings.hub import Connection, Hub
from tidings.node import Node

CLOSE_NORMAL = 1000
CLOSE_REASON = "closed by the server"


def find(hub: Hub, connection_id: str) -> Connection:
    conn = hub.get(connection_id)
    if conn is None:
        raise Gone(f"no open connection {connection_id!r}")
    return conn


def describe(hub: Hub, connection_id: str) -> ConnectionInfo:
    conn = find(hub, connection_id)
    now = time.time()
    connected = float(getattr(conn, "connected_at", now))
    active = max(float(getattr(conn, "last_active", connected)), connected)
    return ConnectionInfo(
        connection_id=conn.id,
        user_id=conn.user_id,
        connected_at=int(connected * 1000),
        last_active_at=int(active * 1000),
        source_ip=str(getattr(conn, "source_ip", "")),
        user_agent=str(getattr(conn, "user_agent", "")),
    )


def post(node: Node, connection_id: str, data: bytes) -> None:
    """One text frame with ``data`` as is, to this connection only."""
    find(node.hub, connection_id).write_frame(node.encode(data))


def disconnect(hub: Hub, connection_id: str) -> None:
    find(hub, connection_id).close(CLOSE_NORMAL, CLOSE_REASON)


def local_ids(hub: Hub, user_id: str) -> list[str]:
    return [conn.id for conn in hub.of_user(user_id)]


class LocalCluster:
    """One node, no registry to keep: the hub is the truth."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.node_id = node.node_id

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def presence(self, user_id: str) -> Presence:
        return Presence(user_id, tuple(local_ids(self.node.hub, user_id)))

    async def describe(self, connection_id: str) -> ConnectionInfo:
        return describe(self.node.hub, connection_id)

    async def post(self, connection_id: str, data: bytes) -> None:
        post(self.node, connection_id, data)

    async def disconnect(self, connection_id: str) -> None:
        disconnect(self.node.hub, connection_id)
