"""How inbox changes move a user's counters (total, unread, unseen).

Both stores keep the counts of every inbox in the same transaction as each
change, by the moves computed here from the rows a change touched, never by
recounting. Personal items have their counters in the user's stream row.
A topic's items are stored once, so a subscriber's counts are the topic's
``alive`` counter plus three offsets kept on the subscription: minus every
alive item this user does not count (published before they joined, archived,
deleted for them, read, seen). A publish moves only ``alive``; a user's change
moves only their offsets; a sweep moves ``alive`` and, with ``swept_offsets``,
the offsets of subscribers who did not count what went.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Moves = tuple[int, int, int]
"""Deltas of (total, unread, unseen)."""

State = tuple[int | None, int | None, int | None]
"""An item's (read_at, seen_at, archived_at), as the user sees it."""


def marked(action: str, states: Iterable[State]) -> Moves:
    """The moves of ``action`` on the items it changed.

    Only items whose state really changed are passed; the state is the item's
    own except for the column the action sets (either side works: archiving
    keeps read/seen, reading keeps archived).
    """
    total = unread = unseen = 0
    for read_at, seen_at, archived_at in states:
        counted = archived_at is None
        if action in ("read", "unread"):
            unread += (-1 if action == "read" else 1) if counted else 0
        elif action == "seen":
            unseen -= 1 if counted else 0
        else:  # archive / unarchive: the item leaves or rejoins every count
            step = -1 if action == "archive" else 1
            total += step
            unread += step if read_at is None else 0
            unseen += step if seen_at is None else 0
    return total, unread, unseen


def removed(states: Iterable[State]) -> Moves:
    """The moves of deleting items (archived ones were counted nowhere)."""
    total = unread = unseen = 0
    for read_at, seen_at, archived_at in states:
        if archived_at is None:
            total -= 1
            unread -= read_at is None
            unseen -= seen_at is None
    return total, unread, unseen


@dataclass(frozen=True, slots=True)
class Receipt:
    """One user's own state of one topic item (absent: the markers decide)."""

    read_at: int | None = None
    unread: bool = False
    seen_at: int | None = None
    archived_at: int | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Subscription:
    """What decides how a subscriber sees a topic's items."""

    from_seq: int = 0
    read_upto: int = 0
    seen_upto: int = 0


def swept_offsets(swept: list[int], sub: Subscription, receipts: Mapping[int, Receipt]) -> Moves:
    """How one subscriber's offsets move when the topic items ``swept``
    (sorted seqs) are deleted and ``alive`` drops by ``len(swept)``.

    Each swept item this user counted leaves their counts with ``alive``; for
    each one they did not count (in total, unread or unseen) the offset gives
    back the one it took. Markers are ranges, so the default case is a few
    bisections; only the user's receipts on swept items are looked at one by one.
    """

    def upto(seq: int) -> int:
        return bisect_right(swept, seq)

    invisible = upto(sub.from_seq)
    # Without receipts: visible items at or below a marker are read / seen.
    total = invisible
    unread = invisible + max(0, upto(sub.read_upto) - invisible)
    unseen = invisible + max(0, upto(sub.seen_upto) - invisible)
    for seq, receipt in receipts.items():
        if seq <= sub.from_seq:
            continue
        by_marker_read = seq <= sub.read_upto
        by_marker_seen = seq <= sub.seen_upto
        hidden = receipt.deleted or receipt.archived_at is not None
        read = not receipt.unread and (receipt.read_at is not None or by_marker_read)
        seen = receipt.seen_at is not None or by_marker_seen
        total += hidden
        unread += (hidden or read) - by_marker_read
        unseen += (hidden or seen) - by_marker_seen
    return total, unread, unseen
