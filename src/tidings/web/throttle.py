"""The rate limits every transport applies, one place for the rules.

- new connections: per client address and per node, refused before the
  upgrade with 429 and ``Retry-After``;
- publishes: per user token and per admin (service) token, answered with a
  ``rate_limited`` error (HTTP 429, or an error frame with the request's id);
- client frames: per connection, each refused frame answered with a
  ``rate_limited`` error frame; a client that keeps on after
  ``STRIKES`` refusals in a row (refusals earn back one a second) is closed
  with ``RATE_LIMIT_CLOSE``.

Counted in memory, per node: a token bucket costs a dict lookup and a few
float operations, nothing on the delivery path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tidings.config import Settings
from tidings.core.errors import RateLimited
from tidings.core.ratelimit import Bucket, Buckets, Rate
from tidings.core.tokens import Identity

RATE_LIMIT_CLOSE = 4429
"""Close code for a client that kept sending past its frame rate."""
STRIKES = Rate(1.0, burst_of=10.0)
"""Refused frames a connection may have before it is closed, earned back one a second."""


class FrameAllowance(Bucket):
    """One connection's frame rate (``take``, as any bucket) and its strikes."""

    __slots__ = ("_strikes",)

    def __init__(self, rate: Rate, now: float) -> None:
        super().__init__(rate, now)
        self._strikes = Bucket(STRIKES, now)

    def strike(self, now: float) -> bool:
        """Count a refused frame; True once the client has used up its strikes."""
        return self._strikes.take(now) > 0


class Throttle:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        refused: Counter[str] | None = None,
    ) -> None:
        self.clock = clock
        self.refused: Counter[str] = Counter() if refused is None else refused
        """Refusals by the setting whose rate was passed (the metrics read them)."""
        self._frame_rate = Rate(settings.frame_rate)
        self._per_ip = Buckets(Rate(settings.connect_rate_per_ip))
        overall = Rate(settings.connect_rate)
        self._overall = Bucket(overall, clock()) if overall.limited else None
        self._per_user = _buckets(settings.publish_rate)
        self._per_service = _buckets(settings.service_publish_rate)

    def connect(self, client_ip: str) -> None:
        """A new connection from ``client_ip``; RateLimited if over either rate."""
        now = self.clock()
        if self._per_ip.rate.limited:
            wait = self._per_ip.take(client_ip, now)
            if wait:
                self.refused["connect_rate_per_ip"] += 1
                raise RateLimited("too many new connections from this address", retry_after=wait)
        if self._overall is not None:
            wait = self._overall.take(now)
            if wait:
                self.refused["connect_rate"] += 1
                raise RateLimited("too many new connections to this server", retry_after=wait)

    def publish(self, who: Identity) -> None:
        """One publish by ``who``; RateLimited if over its token's rate."""
        buckets = self._per_service if who.admin else self._per_user
        if buckets is None:
            return
        wait = buckets.take(who.user_id, self.clock())
        if wait:
            self.refused["service_publish_rate" if who.admin else "publish_rate"] += 1
            kind = "admin token" if who.admin else "user"
            raise RateLimited(f"too many notifications from this {kind}", retry_after=wait)

    def frames(self) -> FrameAllowance | None:
        """A new connection's frame allowance; None when frames are not limited."""
        if not self._frame_rate.limited:
            return None
        return FrameAllowance(self._frame_rate, self.clock())


def _buckets(per_second: float) -> Buckets | None:
    """Buckets for a rate; None when it is unlimited, so a check is one comparison."""
    rate = Rate(per_second)
    return Buckets(rate) if rate.limited else None
