"""Token buckets: how often something may happen, decided without I/O.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second; each event
takes one. An empty bucket answers how long until the next token, which is
what a refusal tells the client (``Retry-After``). The caller passes the
clock (``loop.time()``), so the same code runs in tests without sleeping.

``Buckets`` keeps one bucket per key (a user, a client address) and forgets
keys whose bucket has filled up again: a full bucket is the same as none, so
a flood of new keys costs memory only while they are busy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """Events per second, and how many may come at once (default: two seconds'
    worth, at least one); a rate of 0 means unlimited."""

    per_second: float
    burst_of: float | None = None

    @property
    def limited(self) -> bool:
        return self.per_second > 0

    @property
    def burst(self) -> float:
        return self.burst_of if self.burst_of is not None else max(1.0, 2 * self.per_second)


class Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate.per_second
        self.burst = rate.burst
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Buckets:
    """One bucket per key, created on first use; full ones are dropped when many.

    ``sweep_at`` keys trigger a sweep of the full buckets; if most are still
    busy, the next sweep waits until there are twice as many, so sweeping
    stays linear in the number of events however many keys are busy.
    """

    __slots__ = ("_buckets", "_floor", "_sweep_at", "rate")

    def __init__(self, rate: Rate, *, sweep_at: int = 10_000) -> None:
        self.rate = rate
        self._buckets: dict[str, Bucket] = {}
        self._floor = sweep_at
        self._sweep_at = sweep_at

    def take(self, key: str, now: float) -> float:
        """0.0 if ``key`` may go ahead now, else the seconds it must wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            bucket = self._buckets[key] = Bucket(self.rate, now)
        return bucket.take(now)

    def _sweep(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
        self._sweep_at = max(self._floor, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)
