"""Broker backends, chosen by URL scheme; a driver is imported only when chosen."""

from __future__ import annotations

from tidings.broker.base import Broker
from tidings.core.errors import ConfigError


def open_broker(url: str) -> Broker:
    """A broker for ``url``: ``memory://`` (default, one node) or ``redis://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from tidings.broker.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("redis", "rediss"):
        try:
            from tidings.broker.redis import RedisBroker  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"Redis broker needs its driver: pip install 'tidings[redis]' ({exc})"
            ) from None
        broker: Broker = RedisBroker.from_url(url)
        return broker
    raise ConfigError(
        f"unknown broker URL scheme {scheme!r} in --broker (use memory:// or redis://)"
    )
