"""Presence and connection management across nodes, chosen by the broker URL.

``memory://`` (one node): ``LocalCluster``, the hub is the registry.
``redis://``: ``RedisCluster``, a registry in the broker's Redis under the
same prefix, and calls routed to the node holding a connection.
"""

from __future__ import annotations

from tidings.cluster.base import Cluster, ConnectionInfo, Gone, Presence, node_of
from tidings.core.errors import ConfigError
from tidings.node import Node

__all__ = ["Cluster", "ConnectionInfo", "Gone", "Presence", "node_of", "open_cluster"]


def open_cluster(broker_url: str, node: Node, *, node_ttl: float = 10.0) -> Cluster:
    scheme = broker_url.split(":", 1)[0].lower()
    if scheme == "memory":
        from tidings.cluster.local import LocalCluster

        return LocalCluster(node)
    if scheme in ("redis", "rediss"):
        try:
            from tidings.cluster.redis import RedisCluster
        except ImportError as exc:
            raise ConfigError(
                f"the Redis cluster registry needs its driver: pip install 'tidings[redis]' ({exc})"
            ) from None
        return RedisCluster.from_url(node, broker_url, node_ttl=node_ttl)
    raise ConfigError(f"unknown broker URL scheme {scheme!r} (use memory:// or redis://)")
