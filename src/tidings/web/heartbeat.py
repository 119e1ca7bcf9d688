"""Finds dead peers: pings connections that went quiet, drops those that stay quiet.

Any byte from a client proves it alive, so busy connections are never pinged.
One loop for all connections, not a task each, and spread out: each tick
looks at a slice of the connections (all of them once per ``interval``, at
least ``MIN_SLICE`` a tick). Clients that connected together go quiet
together; pinging ten thousand of them in one loop iteration (then reading
ten thousand pongs) stalled every other frame for about 200 ms, and even
scanning them all each tick showed in the latency tail. A connection is
dropped ``timeout`` after a ping it left unanswered, so a dead peer is found
within about ``2 * interval + timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import math

from tidings.hub import Connection, Hub

log = logging.getLogger("tidings.heartbeat")

TICKS_PER_INTERVAL = 20
"""How finely one interval's work is spread."""
MIN_SLICE = 100
"""Connections a tick may always look at, however few there are."""


async def run_heartbeat(hub: Hub, *, interval: float, timeout: float) -> None:
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    tick = max(min(interval, timeout) / TICKS_PER_INTERVAL, 0.05)
    round_: list[Connection] = []
    start = size = 0
    while True:
        await asyncio.sleep(tick)
        if start >= len(round_):  # a new round over the connections open now
            round_, start = list(hub), 0
            size = max(MIN_SLICE, math.ceil(len(round_) * tick / interval))
        now = loop.time()
        batch = round_[start : start + size]
        start += size
        for conn in batch:
            if conn.last_ping > conn.last_seen:  # pinged, and not a byte since
                if now - conn.last_ping > timeout:
                    log.info("ping timeout", extra={"conn": conn.id, "user": conn.user_id})
                    conn.abort()
            elif now - conn.last_seen > interval:
                conn.ping()
