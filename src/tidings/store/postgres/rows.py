"""Rows of the PostgreSQL store as the core's values, and the counter moves
they make: what the inbox and the sweeps share (SQLite's ``rows.py`` twin)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidings.core.counters import State, marked, removed
from tidings.core.models import Counts, InboxItem, Notification
from tidings.core.publish import stored_data

StreamMoves = tuple[int, int, int, int]
"""How a change moves one user's counters: total, unread, unseen, and the
seq ``trimmed`` rises to (0: unchanged)."""


def to_notification(user_id: str, row: Any, topic: str | None = None) -> Notification:
    """A stored row as a notification; a topic's has no user (it is the same for all)."""
    return Notification(
        id=row["id"],
        user_id="" if topic is not None else user_id,
        seq=row["seq"],
        message=row["message"],
        created_at=row["created_at"],
        sender=row["sender"],
        data=stored_data(row["data"], row["id"]),
        tags=tuple(row["tags"]),
        expires_at=row["expires_at"],
        topic=topic,
    )


def to_item(user_id: str, row: Any, topic: str | None = None) -> InboxItem:
    return InboxItem(
        to_notification(user_id, row, topic),
        read_at=row["read_at"],
        seen_at=row["seen_at"],
        archived_at=row["archived_at"],
        user_id=user_id,
    )


def state(row: Any) -> State:
    return row["read_at"], row["seen_at"], row["archived_at"]


def marked_moves(action: str, rows: Sequence[Any]) -> StreamMoves:
    """The counter moves of ``action`` on the rows it changed."""
    return (*marked(action, map(state, rows)), 0)


def removed_moves(rows: Sequence[Any], trimmed: int = 0) -> StreamMoves:
    """The counter moves of deleting ``rows``."""
    return (*removed(map(state, rows)), trimmed)


def by_seq(row: Any) -> tuple[str, int]:
    return row["user_id"], row["seq"]


def counts_of(row: Any) -> Counts:
    return Counts(int(row["total"]), int(row["unread"]), int(row["unseen"]))
