"""Inbox queries and changes on SQLite, as functions of an open connection.

Each runs inside the transaction the caller opened (``SQLiteStore._read`` or
``_write``). Counters in ``streams`` (total, unread, unseen) move in the same
transaction as the rows they count; items that expired but were not swept yet
are subtracted when counts are read, so counts are exact at every moment.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tidings.core.counters import Moves, marked, removed
from tidings.core.inbox import InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, InboxItem, StreamPage, iso_ms
from tidings.store.base import Expired
from tidings.store.sqlite import receipts, topics
from tidings.store.sqlite.rows import ALIVE, COLUMNS, filter_clauses, to_item


def list_items(
    conn: sqlite3.Connection, user_id: str, query: InboxQuery, now: int
) -> tuple[list[InboxItem], bool]:
    """One page of the personal stream merged with the user's topics, in id order.

    Each source is read with its own index up to ``limit + 1`` rows, then the
    sources are merged; so a page costs a few short index scans, not a sort of
    the whole inbox.
    """
    clauses, params = filter_clauses(query.filter, now)
    if query.after is not None:
        clauses.append("id < ?" if query.newest_first else "id > ?")
        params.append(query.after)
    order = "DESC" if query.newest_first else "ASC"
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM notifications WHERE user_id = ? AND {' AND '.join(clauses)}"
        f" ORDER BY id {order} LIMIT ?",
        (user_id, *params, query.limit + 1),
    ).fetchall()
    items = [to_item(user_id, row) for row in rows]
    items += topics.list_items(
        conn, user_id, query.filter, query.after, query.newest_first, query.limit + 1, now
    )
    items.sort(key=lambda item: item.notification.id, reverse=query.newest_first)
    return items[: query.limit], len(items) > query.limit


def count(conn: sqlite3.Connection, user_id: str, f: InboxFilter, now: int) -> int:
    kept = f.kept_count()
    if kept is not None:  # one of the whole-inbox counts: read the counters
        return getattr(counts(conn, user_id, now), kept)  # type: ignore[no-any-return]
    clauses, params = filter_clauses(f, now)
    row = conn.execute(
        f"SELECT count(*) FROM notifications WHERE user_id = ? AND {' AND '.join(clauses)}",
        (user_id, *params),
    ).fetchone()
    return int(row[0]) + topics.count(conn, user_id, f, now)


def counts(conn: sqlite3.Connection, user_id: str, now: int) -> Counts:
    """Personal counters (kept by every change) less what expired unswept, plus
    the topic counters."""
    total, unread, unseen = topics.counts(conn, user_id, now)
    row = conn.execute(
        "SELECT total, unread, unseen FROM streams WHERE user_id = ?", (user_id,)
    ).fetchone()
    if row is None:
        return Counts(total, unread, unseen)
    stale = conn.execute(
        "SELECT count(*), coalesce(sum(read_at IS NULL), 0), coalesce(sum(seen_at IS NULL), 0)"
        " FROM notifications WHERE user_id = ? AND expires_at IS NOT NULL AND expires_at <= ?"
        " AND archived_at IS NULL",
        (user_id, now),
    ).fetchone()
    return Counts(total + row[0] - stale[0], unread + row[1] - stale[1], unseen + row[2] - stale[2])


def history(
    conn: sqlite3.Connection,
    user_id: str,
    after_seq: int,
    before_seq: int | None,
    limit: int,
    now: int,
) -> StreamPage:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM notifications WHERE user_id = ? AND seq > ? AND seq < ?"
        f" AND {ALIVE} ORDER BY seq LIMIT ?",
        (user_id, after_seq, before_seq if before_seq is not None else 2**62, now, limit),
    ).fetchall()
    stream = conn.execute(
        "SELECT head, trimmed FROM streams WHERE user_id = ?", (user_id,)
    ).fetchone()
    head, trimmed = stream if stream is not None else (0, 0)
    items = [to_item(user_id, row).notification for row in rows]
    return StreamPage(items=items, head=head, trimmed=trimmed)


# -- changes ------------------------------------------------------------------

_SET = {
    "read": ("read_at = ?", "read_at IS NULL"),
    "unread": ("read_at = NULL", "read_at IS NOT NULL"),
    "seen": ("seen_at = ?", "seen_at IS NULL"),
    "archive": ("archived_at = ?", "archived_at IS NULL"),
    "unarchive": ("archived_at = NULL", "archived_at IS NOT NULL"),
}
"""For each action: the assignment, and which rows it changes (the others are
already in that state, so counters move once per real change)."""


def mark(
    conn: sqlite3.Connection, user_id: str, change: Mark, now: int
) -> tuple[list[str], Counts]:
    assignment, pending = _SET[change.action]
    params: list[Any] = [now] if "?" in assignment else []
    if change.ids is not None:
        target = f"id IN ({','.join('?' * len(change.ids))})"
        params += [user_id, *change.ids]
    else:
        target = "id <= ?"
        params += [user_id, change.up_to]
    rows = conn.execute(
        f"UPDATE notifications SET {assignment} WHERE user_id = ? AND {target} AND {pending}"
        f" AND {ALIVE} RETURNING id, read_at, seen_at, archived_at",
        [*params, now],
    ).fetchall()
    _adjust(conn, user_id, marked(change.action, [row[1:] for row in rows]))
    changed = [row[0] for row in rows] + receipts.mark(conn, user_id, change, now)
    return changed, counts(conn, user_id, now)


def delete(
    conn: sqlite3.Connection, user_id: str, ids: list[str], now: int
) -> tuple[list[str], Counts]:
    """Delete alive items (an expired one is gone already, for the user)."""
    rows = conn.execute(
        f"DELETE FROM notifications WHERE user_id = ? AND id IN ({','.join('?' * len(ids))})"
        f" AND {ALIVE} RETURNING id, read_at, seen_at, archived_at",
        (user_id, *ids, now),
    ).fetchall()
    _adjust(conn, user_id, removed(row[1:] for row in rows))
    deleted = [row[0] for row in rows] + receipts.delete(conn, user_id, ids, now)
    return deleted, counts(conn, user_id, now)


def _adjust(conn: sqlite3.Connection, user_id: str, moves: Moves) -> None:
    if any(moves):
        conn.execute(
            "UPDATE streams SET total = total + ?, unread = unread + ?, unseen = unseen + ?"
            " WHERE user_id = ?",
            (*moves, user_id),
        )


def expire(conn: sqlite3.Connection, now: int, limit: int) -> list[Expired]:
    rows = conn.execute(
        "SELECT user_id, seq, id, read_at, seen_at, archived_at FROM notifications"
        " WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    by_user: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    conn.executemany(
        "DELETE FROM notifications WHERE user_id = ? AND seq = ?", [(r[0], r[1]) for r in rows]
    )
    swept = []
    for user_id, items in by_user.items():
        _adjust(conn, user_id, removed(row[3:] for row in items))
        # Retention cut this stream up to here: a replay from below is incomplete.
        conn.execute(
            "UPDATE streams SET trimmed = max(trimmed, ?) WHERE user_id = ?",
            (max(row[1] for row in items), user_id),
        )
        swept.append(Expired(user_id, tuple(row[2] for row in items), counts(conn, user_id, now)))
    for topic, ids in topics.expire(conn, now, limit - len(rows)).items():
        swept.append(Expired("", tuple(ids), None, topic=topic))
    return swept


def trim(
    conn: sqlite3.Connection, user_ids: list[str], keep: int, limit: int, now: int
) -> list[Expired]:
    """Remove from each stream what lies more than ``keep`` below its head, at
    most ``limit`` rows each (the oldest first)."""
    swept = []
    for user_id, head in conn.execute(
        f"SELECT user_id, head FROM streams WHERE user_id IN"
        f" ({','.join('?' * len(user_ids))}) AND head - trimmed > ?",
        (*user_ids, keep),
    ).fetchall():
        cut = head - keep
        rows = conn.execute(
            "SELECT seq, id, read_at, seen_at, archived_at FROM notifications"
            " WHERE user_id = ? AND seq <= ? ORDER BY seq LIMIT ?",
            (user_id, cut, limit),
        ).fetchall()
        conn.executemany(
            "DELETE FROM notifications WHERE user_id = ? AND seq = ?",
            [(user_id, row[0]) for row in rows],
        )
        _adjust(conn, user_id, removed(row[2:] for row in rows))
        trimmed = cut if len(rows) < limit else rows[-1][0]
        conn.execute(
            "UPDATE streams SET trimmed = max(trimmed, ?) WHERE user_id = ?", (trimmed, user_id)
        )
        if rows:
            ids = tuple(row[1] for row in rows)
            swept.append(Expired(user_id, ids, counts(conn, user_id, now)))
    return swept


def erase(conn: sqlite3.Connection, user_id: str) -> int:
    gone = conn.execute("DELETE FROM notifications WHERE user_id = ?", (user_id,)).rowcount
    # Keep only the head, so a seq is never reused for this user id.
    conn.execute(
        "UPDATE streams SET trimmed = head, total = 0, unread = 0, unseen = 0 WHERE user_id = ?",
        (user_id,),
    )
    conn.execute("DELETE FROM idempotency WHERE sender = ?", (user_id,))
    topics.erase(conn, user_id)
    return int(gone)


def export(conn: sqlite3.Connection, user_id: str, now: int) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM notifications WHERE user_id = ? ORDER BY seq", (user_id,)
    ).fetchall()
    stream = conn.execute("SELECT head FROM streams WHERE user_id = ?", (user_id,)).fetchone()
    return {
        "userId": user_id,
        "exportedAt": iso_ms(now),
        "head": stream[0] if stream else 0,
        "counts": counts(conn, user_id, now).to_json(),
        "notifications": [to_item(user_id, row).to_json() for row in rows],
        **topics.export(conn, user_id),
    }
