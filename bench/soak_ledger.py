"""The soak's accounting: what each subscriber was owed and what it got.

A subscriber (a ``Device``: one user's device, across all its reconnects)
follows streams: its user's personal stream and the ``everyone`` topic. Each
stream is numbered 1, 2, 3, ... by the server, so frames are checked by seq as
they arrive, in constant memory per stream (a watermark and the few seqs seen
above a gap), whatever the length of the run:

- duplicated: a seq the subscriber had already received;
- reordered: a seq below one it had already received;
- lost (at the end): an acked seq of a followed stream it never received.

Notifications the publisher was not told were stored (an error, a dropped
connection) may arrive or not: neither counts.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any, Protocol

FAULTS = ("lost", "duplicated", "reordered")


class Stream:
    """One subscriber's view of one stream."""

    __slots__ = ("duplicated", "extras", "high", "received", "reordered", "top")

    def __init__(self) -> None:
        self.high = 0
        """Every seq up to here was received: the ``since`` to reconnect with."""
        self.top = 0
        self.extras: set[int] = set()
        """Seqs received above a gap (empty unless something went missing)."""
        self.received = 0
        self.duplicated = 0
        self.reordered = 0

    def saw(self, seq: int) -> None:
        self.received += 1
        if seq <= self.high or seq in self.extras:
            self.duplicated += 1
            return
        if seq < self.top:
            self.reordered += 1
        self.top = max(self.top, seq)
        if seq == self.high + 1:
            self.high = seq
            while self.high + 1 in self.extras:
                self.high += 1
                self.extras.discard(self.high)
        else:
            self.extras.add(seq)

    def has(self, seq: int) -> bool:
        return seq <= self.high or seq in self.extras


class Subscriber(Protocol):
    user: str
    streams: dict[str, Stream]
    """Keyed by stream name: the user id, or ``#topic``."""


class Ledger:
    """Acked seqs per stream, from the publishers' answers."""

    def __init__(self) -> None:
        self.acked: dict[str, set[int]] = collections.defaultdict(set)
        self.notifications = 0
        """Acked publishes (a publish to two users is one)."""

    def ack(self, pairs: Iterable[tuple[str, int]]) -> None:
        """One acked publish: the ``(stream, seq)`` it was given in each stream."""
        self.notifications += 1
        for stream, seq in pairs:
            self.acked[stream].add(seq)

    def missing(self, subscriber: Subscriber) -> int:
        return sum(
            sum(1 for seq in self.acked.get(name, ()) if not stream.has(seq))
            for name, stream in subscriber.streams.items()
        )

    def count(self, subscribers: Iterable[Subscriber]) -> dict[str, Any]:
        """Totals, plus the users with a fault (each with its own counts)."""
        per_user: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for subscriber in subscribers:
            row = per_user[subscriber.user]
            for name, stream in subscriber.streams.items():
                acked = self.acked.get(name, set())
                row["owed"] += len(acked)
                row["delivered"] += stream.received
                row["lost"] += sum(1 for seq in acked if not stream.has(seq))
                row["duplicated"] += stream.duplicated
                row["reordered"] += stream.reordered
        totals: collections.Counter[str] = collections.Counter()
        for row in per_user.values():
            totals.update(row)
        return {
            "acked_notifications": self.notifications,
            "users": len(per_user),
            **{key: totals[key] for key in ("owed", "delivered", *FAULTS)},
            "faulty_users": {
                user: dict(row) for user, row in per_user.items() if any(row[f] for f in FAULTS)
            },
        }
