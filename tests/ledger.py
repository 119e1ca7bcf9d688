"""The accounting every fault test does the same way: what publishers were
told was stored, against what the store holds and what each subscriber got.

A notification is named by a key unique in its test (its message text). A
publisher that got an ack records it (``ack``); each subscriber records every
notification frame it receives, in arrival order, duplicates included
(``follow``). ``count`` then says, over all streams and subscribers:

- acked: acks given, one per recipient;
- lost: acked notifications missing from the store (when given) or from a
  subscriber of their user;
- duplicated: frames a subscriber received again;
- reordered: frames a subscriber received after one of a higher seq.

Notifications stored without an ack (an outcome the publisher was told is
unknown) may reach subscribers or not: neither counts as a fault.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Counts:
    acked: int
    lost: int
    duplicated: int
    reordered: int

    def check(self) -> None:
        """Something was acked, and nothing was lost, duplicated or reordered."""
        faults = (self.lost, self.duplicated, self.reordered)
        assert self.acked > 0 and faults == (0, 0, 0), self


@dataclass
class Ledger:
    acked: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    """Per user, the keys of the notifications acked to them."""
    frames: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Per subscriber, the ``(seq, key)`` of every notification frame it got."""
    stream_of: dict[str, str] = field(default_factory=dict)
    """Per subscriber, the user whose stream it follows."""

    def ack(self, key: str, users: Iterable[str]) -> None:
        for user in users:
            self.acked[user].add(key)

    def follow(
        self, subscriber: str, user: str, frames: list[tuple[int, str]] | None = None
    ) -> list[tuple[int, str]]:
        """Count ``subscriber`` of ``user``'s stream; returns the list its
        ``(seq, key)`` frames go in (``frames``, when the subscriber keeps its own)."""
        self.stream_of[subscriber] = user
        self.frames[subscriber] = frames if frames is not None else []
        return self.frames[subscriber]

    def missing(self, subscriber: str) -> set[str]:
        """What was acked to the subscriber's user and has not reached it (yet)."""
        got = {key for _, key in self.frames[subscriber]}
        return self.acked[self.stream_of[subscriber]] - got

    def count(self, stored: Collection[tuple[str, str]] | None = None) -> Counts:
        """The figures; ``stored``: the ``(user, key)`` pairs the store holds."""
        lost = duplicated = reordered = 0
        if stored is not None:
            held: dict[str, set[str]] = collections.defaultdict(set)
            for user, key in stored:
                held[user].add(key)
            lost += sum(len(keys - held[user]) for user, keys in self.acked.items())
        for subscriber, frames in self.frames.items():
            lost += len(self.missing(subscriber))
            seen: set[str] = set()
            highest = 0
            for seq, key in frames:
                if key in seen:
                    duplicated += 1
                    continue
                seen.add(key)
                if seq < highest:
                    reordered += 1
                highest = max(highest, seq)
        acked = sum(len(keys) for keys in self.acked.values())
        return Counts(acked=acked, lost=lost, duplicated=duplicated, reordered=reordered)
