"""This node's side of the cluster: acting on its own connections.

``LocalCluster`` answers every call with these; a ``RedisCluster`` node runs
them for its own connections and when another node routes a call to it.
"""

from __future__ import annotations

from tidings.broker.cluster import ConnectionInfo, Gone, Member, Members, NodeLoad

CLOSE_NORMAL = 1000
CLOSE_REASON = "closed by the server"


def find(members: Members, connection_id: str) -> Member:
    conn = members.get(connection_id)
    if conn is None:
        raise Gone(f"no open connection {connection_id!r}")
    return conn


def describe(members: Members, connection_id: str) -> ConnectionInfo:
    conn = find(members, connection_id)
    connected = conn.connected_at
    return ConnectionInfo(
        connection_id=conn.id,
        user_id=conn.user_id,
        connected_at=int(connected * 1000),
        last_active_at=int(max(conn.last_active, connected) * 1000),
        source_ip=conn.source_ip,
        user_agent=conn.user_agent,
    )


def post(members: Members, connection_id: str, data: bytes) -> None:
    """One text frame with ``data`` as is, to this connection only."""
    if not members.post(connection_id, data):
        raise Gone(f"no open connection {connection_id!r}")


def disconnect(members: Members, connection_id: str) -> None:
    find(members, connection_id).close(CLOSE_NORMAL, CLOSE_REASON)


def local_ids(members: Members, user_id: str) -> list[str]:
    return [conn.id for conn in members.of_user(user_id)]


def load(members: Members, node_id: str) -> NodeLoad:
    return NodeLoad(node_id, len(members), frozenset(members.users()))
