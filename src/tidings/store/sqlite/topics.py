"""Topics on SQLite: stored once, read per subscriber through markers and receipts.

A topic notification is one row. Each subscriber's view of it is derived:
visible after the subscription's ``from_seq``; read when a receipt says so or
its seq is at or below the subscription's ``read_upto`` marker (unless a
receipt marks it unread again); seen likewise with ``seen_upto``; archived or
deleted only through a receipt. So a broadcast to everyone is one row, and a
mark-all-read is one marker update, whatever the audience.

Counts are kept, not counted: ``topics.alive`` counts a topic's rows, and each
subscription keeps three offsets from it (``tidings.core.counters``), moved
by the user's changes in the same transaction and by the sweeper.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from tidings.core.counters import (
    Moves,
    Receipt,
    Subscription,
    swept_offsets,
)
from tidings.core.inbox import EVERYONE, InboxFilter
from tidings.core.models import InboxItem, StreamPage
from tidings.store.sqlite.rows import ALIVE, filter_clauses, to_item

Sub = tuple[str, int, int, int | None, int, int | None]
"""topic, from_seq, read_upto, read_upto_at, seen_upto, seen_upto_at"""

VIEW = """
    SELECT t.seq, t.id, t.sender, t.message, t.data, t.tags, t.created_at, t.expires_at,
        CASE WHEN r.unread = 1 THEN NULL
             WHEN r.read_at IS NOT NULL THEN r.read_at
             WHEN t.seq <= :read_upto THEN :read_upto_at END AS read_at,
        CASE WHEN r.seen_at IS NOT NULL THEN r.seen_at
             WHEN t.seq <= :seen_upto THEN :seen_upto_at END AS seen_at,
        r.archived_at AS archived_at
    FROM topic_notifications t {index}
    LEFT JOIN receipts r ON r.user_id = :user AND r.topic = t.topic AND r.seq = t.seq
    WHERE t.topic = :topic AND t.seq > :from_seq AND coalesce(r.deleted, 0) = 0
"""
"""One subscriber's view of one topic, columns as in the personal table."""
BY_ID = "INDEXED BY topic_notifications_by_id"
"""For pages in id order: walk the (topic, id) index and stop at the limit,
instead of sorting the whole topic (the planner would rather use the seq range)."""


def subscriptions(conn: sqlite3.Connection, user_id: str) -> list[Sub]:
    """The user's topics with their markers; ``everyone`` is always among them."""
    rows: list[Sub] = conn.execute(
        "SELECT topic, from_seq, read_upto, read_upto_at, seen_upto, seen_upto_at"
        " FROM subscriptions WHERE user_id = ?",
        (user_id,),
    ).fetchall()
    if not any(row[0] == EVERYONE for row in rows):
        rows.append((EVERYONE, 0, 0, None, 0, None))
    return rows


def _params(user_id: str, sub: Sub) -> dict[str, Any]:
    topic, from_seq, read_upto, read_at, seen_upto, seen_at = sub
    return {
        "user": user_id,
        "topic": topic,
        "from_seq": from_seq,
        "read_upto": read_upto,
        "read_upto_at": read_at,
        "seen_upto": seen_upto,
        "seen_upto_at": seen_at,
    }


def view_rows(
    conn: sqlite3.Connection,
    user_id: str,
    sub: Sub,
    clauses: list[str],
    params: list[Any],
    tail: str = "",
    tail_params: tuple[Any, ...] = (),
    index: str = "",
) -> list[tuple[Any, ...]]:
    named = _params(user_id, sub)
    for number, value in enumerate([*params, *tail_params]):
        named[f"p{number}"] = value
    where = _numbered(" AND ".join(clauses), 0)
    return conn.execute(
        f"SELECT * FROM ({VIEW.format(index=index)}) WHERE {where} {_numbered(tail, len(params))}",
        named,
    ).fetchall()


def _numbered(sql: str, start: int) -> str:
    """Turn positional ``?`` into ``:pN`` so they mix with the view's named ones."""
    parts = sql.split("?")
    out = parts[0]
    for number, part in enumerate(parts[1:], start=start):
        out += f":p{number}" + part
    return out


def _item(user_id: str, topic: str, row: tuple[Any, ...]) -> InboxItem:
    item = to_item("", row)
    notification = dataclasses.replace(item.notification, user_id="", topic=topic)
    return InboxItem(notification, item.read_at, item.seen_at, item.archived_at, user_id=user_id)


def list_items(
    conn: sqlite3.Connection,
    user_id: str,
    f: InboxFilter,
    after: str | None,
    newest_first: bool,
    limit: int,
    now: int,
) -> list[InboxItem]:
    """Up to ``limit`` items of each subscribed topic in id order (merged by the caller)."""
    clauses, params = filter_clauses(f, now)
    if after is not None:
        clauses.append("id < ?" if newest_first else "id > ?")
        params.append(after)
    tail = f"ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?"
    items = []
    for sub in subscriptions(conn, user_id):
        rows = view_rows(conn, user_id, sub, clauses, params, tail, (limit,), index=BY_ID)
        items += [_item(user_id, sub[0], row) for row in rows]
    return items


def count(conn: sqlite3.Connection, user_id: str, f: InboxFilter, now: int) -> int:
    clauses, params = filter_clauses(f, now)
    return sum(_count(conn, user_id, sub, clauses, params) for sub in subscriptions(conn, user_id))


def _count(
    conn: sqlite3.Connection, user_id: str, sub: Sub, clauses: list[str], params: list[Any]
) -> int:
    named = _params(user_id, sub)
    for number, value in enumerate(params):
        named[f"p{number}"] = value
    row = conn.execute(
        f"SELECT count(*) FROM ({VIEW.format(index='')})"
        f" WHERE {_numbered(' AND '.join(clauses), 0)}",
        named,
    ).fetchone()
    return int(row[0])


def counts(conn: sqlite3.Connection, user_id: str, now: int) -> Moves:
    """Total, unread and unseen over the user's topics, from each topic's
    ``alive`` counter and the subscription's offsets (see ``core.counters``),
    less what expired and is not swept yet."""
    rows = conn.execute(
        "SELECT s.topic, coalesce(t.alive, 0), s.total_off, s.unread_off, s.unseen_off"
        " FROM subscriptions AS s LEFT JOIN topics AS t ON t.topic = s.topic"
        " WHERE s.user_id = ?",
        (user_id,),
    ).fetchall()
    if not any(row[0] == EVERYONE for row in rows):
        alive = conn.execute("SELECT alive FROM topics WHERE topic = ?", (EVERYONE,)).fetchone()
        rows.append((EVERYONE, alive[0] if alive else 0, 0, 0, 0))
    total = sum(alive + off for _, alive, off, _, _ in rows)
    unread = sum(alive + off for _, alive, _, off, _ in rows)
    unseen = sum(alive + off for _, alive, _, _, off in rows)
    stale = _stale(conn, user_id, now)
    return total - stale[0], unread - stale[1], unseen - stale[2]


def _stale(conn: sqlite3.Connection, user_id: str, now: int) -> Moves:
    """What the counters still count of this user's topic items that expired
    but are not swept yet (usually nothing: one probe of the expiry index)."""
    due = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT topic FROM topic_notifications"
            " WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (now,),
        )
    }
    total = unread = unseen = 0
    for sub in subscriptions(conn, user_id) if due else []:
        if sub[0] not in due:
            continue
        row = conn.execute(
            "SELECT count(*), coalesce(sum(read_at IS NULL), 0), coalesce(sum(seen_at IS NULL), 0)"
            f" FROM ({VIEW.format(index='')}) WHERE archived_at IS NULL"
            " AND expires_at IS NOT NULL AND expires_at <= :now",
            {**_params(user_id, sub), "now": now},
        ).fetchone()
        total, unread, unseen = total + row[0], unread + row[1], unseen + row[2]
    return total, unread, unseen


# -- changes ------------------------------------------------------------------

MOVE_OFFSETS = (
    "UPDATE subscriptions SET total_off = total_off + ?, unread_off = unread_off + ?,"
    " unseen_off = unseen_off + ? WHERE user_id = ? AND topic = ?"
)
"""Move one subscription's offsets by (total, unread, unseen)."""


def read_topic(
    conn: sqlite3.Connection, topic: str, after_seq: int, limit: int, now: int
) -> StreamPage:
    rows = conn.execute(
        "SELECT seq, id, sender, message, data, tags, created_at, expires_at, NULL, NULL, NULL"
        f" FROM topic_notifications WHERE topic = ? AND seq > ? AND {ALIVE} ORDER BY seq LIMIT ?",
        (topic, after_seq, now, limit),
    ).fetchall()
    stream = conn.execute("SELECT head, trimmed FROM topics WHERE topic = ?", (topic,)).fetchone()
    head, trimmed = stream if stream is not None else (0, 0)
    items = [_item("", topic, row).notification for row in rows]
    return StreamPage(items=items, head=head, trimmed=trimmed)


def subscribe(
    conn: sqlite3.Connection, user_ids: list[str], topic: str, now: int
) -> dict[str, int]:
    """Subscribe from the topic's current head; returns each user's start seq
    (unchanged for a user already in). Nothing alive now is the new
    subscriber's: their offsets start at minus ``alive``."""
    row = conn.execute("SELECT head, alive FROM topics WHERE topic = ?", (topic,)).fetchone()
    head, alive = row if row is not None else (0, 0)
    conn.executemany(
        "INSERT INTO subscriptions"
        " (user_id, topic, from_seq, created_at, total_off, unread_off, unseen_off)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, topic) DO NOTHING",
        [(user_id, topic, head, now, -alive, -alive, -alive) for user_id in user_ids],
    )
    starts: dict[str, int] = {}
    for start in range(0, len(user_ids), 900):
        chunk = user_ids[start : start + 900]
        starts.update(
            conn.execute(
                f"SELECT user_id, from_seq FROM subscriptions WHERE topic = ?"
                f" AND user_id IN ({','.join('?' * len(chunk))})",
                (topic, *chunk),
            ).fetchall()
        )
    return starts


def unsubscribe(conn: sqlite3.Connection, user_id: str, topic: str) -> bool:
    gone = conn.execute(
        "DELETE FROM subscriptions WHERE user_id = ? AND topic = ?", (user_id, topic)
    ).rowcount
    conn.execute("DELETE FROM receipts WHERE user_id = ? AND topic = ?", (user_id, topic))
    return bool(gone)


def expire(conn: sqlite3.Connection, now: int, limit: int) -> dict[str, list[str]]:
    """Delete expired topic notifications (and every receipt of them), by topic,
    moving ``alive`` and the offsets of the subscribers who did not count them."""
    rows = conn.execute(
        "SELECT topic, seq, id FROM topic_notifications"
        " WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    by_topic: dict[str, list[str]] = {}
    seqs: dict[str, list[int]] = {}
    for topic, seq, id_ in rows:
        by_topic.setdefault(topic, []).append(id_)
        seqs.setdefault(topic, []).append(seq)
    for topic, swept in seqs.items():
        swept.sort()
        _give_back(conn, topic, swept)
        keys = [(topic, seq) for seq in swept]
        conn.executemany("DELETE FROM topic_notifications WHERE topic = ? AND seq = ?", keys)
        conn.executemany("DELETE FROM receipts WHERE topic = ? AND seq = ?", keys)
        conn.execute(
            "UPDATE topics SET alive = alive - ?, trimmed = max(trimmed, ?) WHERE topic = ?",
            (len(swept), swept[-1], topic),
        )
    return by_topic


def _give_back(conn: sqlite3.Connection, topic: str, swept: list[int]) -> None:
    """Move the offsets of every subscriber of ``topic`` who did not count some
    of the ``swept`` items (only rows whose markers, start or receipts reach
    them can change)."""
    low = swept[0]
    receipts: dict[str, dict[int, Receipt]] = {}
    for start in range(0, len(swept), 900):
        chunk = swept[start : start + 900]
        for user, seq, read_at, unread, seen_at, archived_at, deleted in conn.execute(
            "SELECT user_id, seq, read_at, unread, seen_at, archived_at, deleted FROM receipts"
            f" WHERE topic = ? AND seq IN ({','.join('?' * len(chunk))})",
            (topic, *chunk),
        ):
            receipts.setdefault(user, {})[seq] = Receipt(
                read_at, bool(unread), seen_at, archived_at, bool(deleted)
            )
    subs = conn.execute(
        "SELECT user_id, from_seq, read_upto, seen_upto FROM subscriptions"
        " WHERE topic = ? AND (from_seq >= ? OR read_upto >= ? OR seen_upto >= ? OR user_id IN"
        " (SELECT user_id FROM receipts WHERE topic = ? AND seq BETWEEN ? AND ?))",
        (topic, low, low, low, topic, low, swept[-1]),
    ).fetchall()
    moves = []
    for user, from_seq, read_upto, seen_upto in subs:
        sub = Subscription(from_seq, read_upto, seen_upto)
        move = swept_offsets(swept, sub, receipts.get(user, {}))
        if any(move):
            moves.append((*move, user, topic))
    conn.executemany(MOVE_OFFSETS, moves)


def erase(conn: sqlite3.Connection, user_id: str) -> None:
    conn.execute("DELETE FROM subscriptions WHERE user_id = ?", (user_id,))
    conn.execute("DELETE FROM receipts WHERE user_id = ?", (user_id,))


def export(conn: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    subs = conn.execute(
        "SELECT topic, from_seq, read_upto, seen_upto FROM subscriptions WHERE user_id = ?",
        (user_id,),
    ).fetchall()
    receipts = conn.execute(
        "SELECT topic, seq, read_at, unread, seen_at, archived_at, deleted FROM receipts"
        " WHERE user_id = ? ORDER BY topic, seq",
        (user_id,),
    ).fetchall()
    return {
        "subscriptions": [
            {"topic": t, "fromSeq": f, "readUpTo": r, "seenUpTo": s} for t, f, r, s in subs
        ],
        "receipts": [
            dict(
                zip(
                    ("topic", "seq", "readAt", "unread", "seenAt", "archivedAt", "deleted"),
                    row,
                    strict=True,
                )
            )
            for row in receipts
        ],
    }
