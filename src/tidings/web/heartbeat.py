"""Finds dead peers: pings connections that went quiet, drops those that stay quiet.

Any byte from a client proves it alive, so busy connections are never pinged.
One loop for all connections, not a task each.
"""

from __future__ import annotations

import asyncio
import logging

from tidings.hub import Hub

log = logging.getLogger("tidings.heartbeat")


async def run_heartbeat(hub: Hub, *, interval: float, timeout: float) -> None:
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    tick = max(min(interval, timeout) / 2, 0.05)
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        for conn in hub:
            idle = now - conn.last_seen
            if idle > interval + timeout:
                log.info("ping timeout", extra={"conn": conn.id, "user": conn.user_id})
                conn.abort()
            elif idle > interval and now - conn.last_ping > interval:
                conn.ping()
