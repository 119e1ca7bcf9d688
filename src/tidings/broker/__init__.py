"""Between nodes: the broker (publications) and the cluster (presence and
calls on connections), chosen together by one URL; a driver is imported only
when chosen.

``memory://`` (default, one node): ``MemoryBroker`` and ``LocalCluster``, the
hub is the registry. ``redis://``: ``RedisBroker`` and ``RedisCluster``, a
registry in the same Redis under the same prefix.
"""

from __future__ import annotations

from tidings.broker.base import Broker
from tidings.broker.cluster import (
    Cluster,
    ConnectionInfo,
    Gone,
    Members,
    NodeLoad,
    Presence,
    Repair,
)
from tidings.core.errors import ConfigError

__all__ = [
    "Broker",
    "Cluster",
    "ConnectionInfo",
    "Gone",
    "Members",
    "NodeLoad",
    "Presence",
    "Repair",
    "open_broker",
    "open_cluster",
]

REDIS_SCHEMES = ("redis", "rediss")


def _scheme(url: str) -> str:
    """``memory`` or ``redis``; anything else is refused with the choices."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return scheme
    if scheme in REDIS_SCHEMES:
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"Redis broker needs its driver (the redis extra): pip install redis ({exc})"
            ) from None
        return "redis"
    raise ConfigError(
        f"unknown broker URL scheme {scheme!r} in --broker (use memory:// or redis://)"
    )


def open_broker(url: str) -> Broker:
    """A broker for ``url``: ``memory://`` (default, one node) or ``redis://...``."""
    if _scheme(url) == "memory":
        from tidings.broker.memory import MemoryBroker

        return MemoryBroker()
    from tidings.broker.redis.broker import RedisBroker

    return RedisBroker.from_url(url)


def open_cluster(
    url: str, members: Members, node_id: str, repair: Repair, *, node_ttl: float = 10.0
) -> Cluster:
    """The cluster that goes with ``open_broker(url)``; ``members`` is this node's hub."""
    if _scheme(url) == "memory":
        from tidings.broker.memory import LocalCluster

        return LocalCluster(members, node_id)
    from tidings.broker.redis.cluster import RedisCluster

    return RedisCluster.from_url(members, node_id, repair, url, node_ttl=node_ttl)
