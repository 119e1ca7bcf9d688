"""The heartbeat spreads its work and drops only peers that stay silent after a ping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tidings.core.cursor import StreamCursor
from tidings.hub import Hub
from tidings.web import heartbeat


@dataclass(eq=False)
class Peer:
    """A connection as the heartbeat sees it; ``answers`` says whether it pongs."""

    id: str
    answers: bool
    last_seen: float
    last_ping: float
    user_id: str = "u"
    cursor: StreamCursor = field(default_factory=StreamCursor)
    topics: dict[str, StreamCursor] = field(default_factory=dict)
    pings: int = 0
    aborted: bool = False

    def ping(self) -> None:
        loop = asyncio.get_running_loop()
        self.pings += 1
        self.last_ping = loop.time()
        if self.answers:
            loop.call_soon(setattr, self, "last_seen", loop.time() + 0.001)

    def abort(self) -> None:
        self.aborted = True

    def write_frame(self, frame: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


async def test_quiet_peers_are_pinged_a_slice_per_tick_and_only_mute_ones_dropped() -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(encode=lambda frame: frame, on_gap=lambda conn, topic: None)
    quiet_since = loop.time() - 10  # all went quiet together
    peers = [Peer(f"c{n}", n % 2 == 0, quiet_since, quiet_since) for n in range(3000)]
    for peer in peers:
        hub.add(peer)
    interval = timeout = 0.5
    tick = interval / heartbeat.TICKS_PER_INTERVAL  # 0.025, raised to 0.05
    task = asyncio.create_task(heartbeat.run_heartbeat(hub, interval=interval, timeout=timeout))
    try:
        await asyncio.sleep(0.07)  # one tick
        first = sum(peer.pings for peer in peers)
        share = max(heartbeat.MIN_SLICE, -(-3000 * max(tick, 0.05) // interval))
        assert 0 < first <= share
        await asyncio.sleep(3 * interval + timeout + 0.5)  # a round per interval
        assert all(peer.pings >= 1 for peer in peers)
        assert [peer.aborted for peer in peers] == [not peer.answers for peer in peers]
    finally:
        task.cancel()
