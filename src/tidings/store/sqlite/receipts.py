"""A subscriber's changes to topic items on SQLite: receipts and markers.

Marking or deleting a topic item for one user writes a receipt (or moves the
subscription's ``read_upto``/``seen_upto`` marker for a mark-all) and moves
the subscription's count offsets by what really changed, in the same
transaction (``topics.py`` says how a subscriber's view is derived).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tidings.core.counters import Moves, State, marked, removed
from tidings.core.inbox import Mark
from tidings.store.sqlite import topics
from tidings.store.sqlite.rows import ALIVE

_RECEIPT = {
    "read": (
        "read_at, unread",
        "?, 0",
        "read_at = excluded.read_at, unread = 0",
        "read_at IS NULL",
    ),
    "unread": ("read_at, unread", "NULL, 1", "read_at = NULL, unread = 1", "read_at IS NOT NULL"),
    "seen": ("seen_at", "?", "seen_at = excluded.seen_at", "seen_at IS NULL"),
    "archive": ("archived_at", "?", "archived_at = excluded.archived_at", "archived_at IS NULL"),
    "unarchive": ("archived_at", "NULL", "archived_at = NULL", "archived_at IS NOT NULL"),
}
"""For each action: receipt columns and values to write, and which items it changes."""


def _states(rows: list[tuple[Any, ...]]) -> list[State]:
    """(read_at, seen_at, archived_at) of view rows."""
    return [(row[8], row[9], row[10]) for row in rows]


def _ensure_row(conn: sqlite3.Connection, user_id: str, topic: str, now: int) -> None:
    """The subscription row, created for ``everyone`` (which has one only once
    the user has state in it: markers or offsets)."""
    conn.execute(
        "INSERT INTO subscriptions (user_id, topic, from_seq, created_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (user_id, topic) DO NOTHING",
        (user_id, topic, now),
    )


def _offset(conn: sqlite3.Connection, user_id: str, topic: str, moves: Moves, now: int) -> None:
    """Move the user's offsets in ``topic``."""
    if any(moves):
        _ensure_row(conn, user_id, topic, now)
        conn.execute(topics.MOVE_OFFSETS, (*moves, user_id, topic))


def mark(conn: sqlite3.Connection, user_id: str, change: Mark, now: int) -> list[str]:
    """Apply ``change`` to the user's topic items; returns the ids that changed."""
    changed: list[str] = []
    for sub in topics.subscriptions(conn, user_id):
        if change.up_to is not None and change.action in ("read", "seen"):
            changed += _move_marker(conn, user_id, sub, change.action, change.up_to, now)
        elif change.ids is not None:
            target = f"id IN ({','.join('?' * len(change.ids))})"
            changed += _write_receipts(conn, user_id, sub, change.action, target, change.ids, now)
        else:
            changed += _write_receipts(
                conn, user_id, sub, change.action, "id <= ?", [change.up_to], now
            )
    return changed


def _write_receipts(
    conn: sqlite3.Connection,
    user_id: str,
    sub: topics.Sub,
    action: str,
    target: str,
    target_params: Sequence[Any],
    now: int,
) -> list[str]:
    """Record ``action`` on the alive items of one topic that ``target`` picks
    and that are not in that state yet; returns their ids."""
    columns, values, update, pending = _RECEIPT[action]
    # Picked by id: through the (topic, id) index, not a walk of the topic.
    index = topics.BY_ID if target.startswith("id ") else ""
    rows = topics.view_rows(
        conn, user_id, sub, [target, pending, ALIVE], [*target_params, now], index=index
    )
    if not rows:
        return []
    topic = sub[0]
    conn.executemany(
        f"INSERT INTO receipts (user_id, topic, seq, {columns})"
        f" VALUES (?, ?, ?, {values}) ON CONFLICT (user_id, topic, seq) DO UPDATE SET {update}",
        [(user_id, topic, row[0], *([now] if "?" in values else [])) for row in rows],
    )
    _offset(conn, user_id, topic, marked(action, _states(rows)), now)
    return [row[1] for row in rows]


def _move_marker(
    conn: sqlite3.Connection, user_id: str, sub: topics.Sub, action: str, up_to: str, now: int
) -> list[str]:
    """Mark read (or seen) every item of one topic with an id up to ``up_to``.

    The marker moves to just below the first item with a larger id (ids are
    made on many nodes and seqs at commit, so a larger id can sit at a lower
    seq); the few items with an id up to ``up_to`` above it get receipts. Only
    the items between the old and the new marker (and, for read, the ones
    marked unread one by one below it) are read, not the whole topic.
    """
    topic, from_seq, read_upto, _, seen_upto, _ = sub
    old = read_upto if action == "read" else seen_upto
    newer = conn.execute(
        f"SELECT min(seq) FROM topic_notifications {topics.BY_ID} WHERE topic = ? AND id > ?",
        (topic, up_to),
    ).fetchone()[0]
    top = conn.execute(
        "SELECT max(seq) FROM topic_notifications WHERE topic = ?", (topic,)
    ).fetchone()[0]
    marker = min(newer - 1, top or 0) if newer is not None else top or 0
    pending = f"{action}_at IS NULL"
    rows = topics.view_rows(
        conn, user_id, sub, ["seq > ?", "seq <= ?", pending], [max(old, from_seq), marker]
    )
    if action == "read":  # items marked unread one by one are read again
        rows += topics.view_rows(
            conn,
            user_id,
            sub,
            [
                "seq IN (SELECT seq FROM receipts WHERE user_id = ? AND topic = ? AND unread = 1"
                " AND seq <= ?)",
                pending,
            ],
            [user_id, topic, min(old, marker)],
        )
        conn.execute(
            "UPDATE receipts SET unread = 0 WHERE user_id = ? AND topic = ? AND seq <= ?"
            " AND unread = 1",
            (user_id, topic, marker),
        )
    if marker > old:
        _ensure_row(conn, user_id, topic, now)
        conn.execute(
            f"UPDATE subscriptions SET {action}_upto = ?, {action}_upto_at = ?"
            " WHERE user_id = ? AND topic = ?",
            (marker, now, user_id, topic),
        )
    # Expired items not swept yet are read too (the sweep then gives them
    # back), but only alive ones are reported as changed.
    _offset(conn, user_id, topic, marked(action, _states(rows)), now)
    changed = [row[1] for row in rows if row[7] is None or row[7] > now]
    return changed + _write_receipts(
        conn, user_id, sub, action, "seq > ? AND id <= ?", [marker, up_to], now
    )


def delete(conn: sqlite3.Connection, user_id: str, ids: list[str], now: int) -> list[str]:
    """Hide alive topic items from this user's inbox only."""
    gone: list[str] = []
    for sub in topics.subscriptions(conn, user_id):
        marks = ",".join("?" * len(ids))
        rows = topics.view_rows(
            conn, user_id, sub, [f"id IN ({marks})", ALIVE], [*ids, now], index=topics.BY_ID
        )
        conn.executemany(
            "INSERT INTO receipts (user_id, topic, seq, deleted) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (user_id, topic, seq) DO UPDATE SET deleted = 1",
            [(user_id, sub[0], row[0]) for row in rows],
        )
        _offset(conn, user_id, sub[0], removed(_states(rows)), now)
        gone += [row[1] for row in rows]
    return gone


# -- topic streams ------------------------------------------------------------
