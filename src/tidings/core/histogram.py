"""Bucket counts kept with plain ints, for what the engine measures per batch
or per publish (commit latency, batch sizes, publish-to-ack latency).

No lock and no metrics library: ``observe`` is a bisection and two additions,
on the event loop only. The metrics collector reads the counts at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds: from half a millisecond (a relaxed SQLite commit) to ten seconds."""

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Items per batch, up to the group committer's largest batch (4,096)."""


class Histogram:
    """Observations counted per bucket, with Prometheus' ``le`` rule: a value
    equal to a bound counts in that bound's bucket."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        """One count per bucket (not cumulative); the last is above every bound."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class Batches:
    """What a group committer measures of each batch it flushes."""

    __slots__ = ("latency", "sizes")

    def __init__(self) -> None:
        self.latency = Histogram(LATENCY_BUCKETS)
        """Seconds from handing the batch to the flush to its results."""
        self.sizes = Histogram(SIZE_BUCKETS)
        """Items in each batch."""
