"""Finds dead peers: pings connections that went quiet, drops those that stay quiet.

Any byte from a client proves it alive, so busy connections are never pinged.
One loop for all connections, not a task each. Pings are spread out: clients
that connected together go quiet together, and pinging ten thousand of them
in one loop iteration (then reading ten thousand pongs) stalled every other
frame for about 200 ms. Each tick pings at most its share of the
connections (all of them once per ``interval``, at least ``MIN_PINGS``), and
a connection is dropped only ``timeout`` after a ping it did not answer.
"""

from __future__ import annotations

import asyncio
import logging
import math

from tidings.hub import Hub

log = logging.getLogger("tidings.heartbeat")

TICKS_PER_INTERVAL = 20
"""How finely the pings of one interval are spread."""
MIN_PINGS = 100
"""Pings a tick may always send, however few connections there are."""


async def run_heartbeat(hub: Hub, *, interval: float, timeout: float) -> None:
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    tick = max(min(interval, timeout) / TICKS_PER_INTERVAL, 0.05)
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        conns = list(hub)
        budget = max(MIN_PINGS, math.ceil(len(conns) * tick / interval))
        for conn in conns:
            if conn.last_ping > conn.last_seen:  # pinged, and not a byte since
                if now - conn.last_ping > timeout:
                    log.info("ping timeout", extra={"conn": conn.id, "user": conn.user_id})
                    conn.abort()
            elif budget and now - conn.last_seen > interval:
                conn.ping()
                budget -= 1
