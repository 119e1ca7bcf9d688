"""Topics on PostgreSQL: stored once, read per subscriber through markers and receipts.

The model is SQLite's (``sqlite.topics``): a topic notification is one row in
``topic_notifications``; each subscriber's view of it is derived from the
subscription (visible after ``from_seq``; read at or below ``read_upto``,
seen at or below ``seen_upto``) and from that user's receipt for the item, if
any (read, unread again, seen, archived, deleted). ``everyone`` needs no
subscription row: every user is in it from seq 0 (a row appears once the
user moves a marker in it).

Every change of a user's topic state (receipts, markers, subscriptions) runs
under that user's ``streams`` row lock, like their personal inbox, so
concurrent marks report each real change once. Receipts are locked in
(user, topic, seq) order by every statement that locks several, and
``topics`` rows in topic order after any ``streams`` rows, so no two
transactions deadlock.

Statements here are fragments and complete statements; ``$1`` is always the
user (or the topic, for the topic streams).
"""

from __future__ import annotations

from typing import Any

from tidings.core.inbox import EVERYONE

_SUBS = f"""
SELECT topic, from_seq, read_upto, read_upto_at, seen_upto, seen_upto_at,
    total_off, unread_off, unseen_off
FROM subscriptions WHERE user_id = {{user}}
UNION ALL
SELECT '{EVERYONE}', 0, 0, NULL, 0, NULL, 0, 0, 0
WHERE NOT EXISTS (
    SELECT 1 FROM subscriptions WHERE user_id = {{user}} AND topic = '{EVERYONE}'
)
"""
"""The user's subscriptions with their markers and offsets; ``everyone`` is
always among them."""

_VIEW = """
SELECT t.topic, t.seq, t.id, t.sender, t.message, t.data, t.tags, t.created_at, t.expires_at,
    CASE WHEN r.unread = 1 THEN NULL
         WHEN r.read_at IS NOT NULL THEN r.read_at
         WHEN t.seq <= s.read_upto THEN s.read_upto_at END AS read_at,
    CASE WHEN r.seen_at IS NOT NULL THEN r.seen_at
         WHEN t.seq <= s.seen_upto THEN s.seen_upto_at END AS seen_at,
    r.archived_at
FROM topic_notifications AS t
LEFT JOIN receipts AS r ON r.user_id = {user} AND r.topic = t.topic AND r.seq = t.seq
WHERE t.topic = s.topic AND t.seq > s.from_seq AND CASE WHEN r.deleted = 1 THEN false ELSE true END
"""
"""One subscription ``s``'s items as the user sees them, with the personal
table's column names (plus ``topic``). The ``deleted`` test is a CASE on
purpose: PostgreSQL guesses 1/2 for it, where ``coalesce(...) = 0`` gets
1/200, which made a page look like the whole topic and the planner sort it
instead of reading ``topic_notifications_by_id`` in order up to the page
size."""


def subs(user: str) -> str:
    """The user's subscriptions (``user`` is a placeholder or a column)."""
    return _SUBS.replace("{user}", user)


def view(user: str) -> str:
    """The items of subscription ``s`` as ``user`` sees them (use in a LATERAL)."""
    return _VIEW.replace("{user}", user)


def items(user: str) -> str:
    """Every topic item of ``user``, columns as ``view``, aliased ``v``."""
    return f"SELECT v.* FROM ({subs(user)}) AS s, LATERAL ({view(user)}) AS v"


def counts(user: str, now: str) -> str:
    """Total, unread and unseen over the user's topics: each topic's ``alive``
    plus the subscription's offsets (``tidings.core.counters``), less what
    expired and is not swept yet (found through the topic's expiry index)."""
    return f"""
    SELECT coalesce(sum(a.alive + s.total_off - z.total), 0)::bigint AS total,
        coalesce(sum(a.alive + s.unread_off - z.unread), 0)::bigint AS unread,
        coalesce(sum(a.alive + s.unseen_off - z.unseen), 0)::bigint AS unseen
    FROM ({subs(user)}) AS s
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT alive FROM topics WHERE topic = s.topic), 0) AS alive
    ) AS a
    CROSS JOIN LATERAL (
        SELECT count(*) AS total, count(*) FILTER (WHERE v.read_at IS NULL) AS unread,
            count(*) FILTER (WHERE v.seen_at IS NULL) AS unseen
        FROM ({view(user)} AND t.expires_at IS NOT NULL AND t.expires_at <= {now}) AS v
        WHERE v.archived_at IS NULL
    ) AS z
    """


LOCK_TOPICS = f"""
SELECT topic FROM topics
WHERE topic = '{EVERYONE}' OR topic IN (SELECT topic FROM subscriptions WHERE user_id = $1)
ORDER BY topic FOR KEY SHARE
"""
"""Taken by every change of user $1's topic state, after their stream lock: it
lets publishes through but waits for a sweep of those topics (``LOCK_SWEPT``),
so a sweep sees every user's state of the items it removes as it stays."""

LOCK_TOPIC = "SELECT head, alive FROM topics WHERE topic = $1 FOR KEY SHARE"

LOCK_SWEPT = "SELECT topic FROM topics WHERE topic = ANY($1::text[]) ORDER BY topic FOR UPDATE"
"""A sweep's lock on the topics it removes items from (see ``LOCK_TOPICS``)."""

OFFSETS = """
INSERT INTO subscriptions AS s
    (user_id, topic, from_seq, created_at, total_off, unread_off, unseen_off)
SELECT $1, t, 0, $6, a, b, c FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
    AS x(t, a, b, c) ORDER BY t
ON CONFLICT (user_id, topic) DO UPDATE SET total_off = s.total_off + excluded.total_off,
    unread_off = s.unread_off + excluded.unread_off,
    unseen_off = s.unseen_off + excluded.unseen_off
"""
"""Move user $1's offsets in topics $2 by $3, $4, $5 (total, unread, unseen) at
time $6; ``everyone``'s row appears here, once the user has state in it."""

SWEPT_OFFSETS = """
UPDATE subscriptions AS s
SET total_off = s.total_off + x.a, unread_off = s.unread_off + x.b,
    unseen_off = s.unseen_off + x.c
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS x(u, a, b, c)
WHERE s.topic = $1 AND s.user_id = x.u
"""
"""Give back to the subscribers $2 of topic $1 what a sweep took from ``alive``
but they did not count."""

SWEPT_SUBSCRIBERS = """
SELECT user_id, from_seq, read_upto, seen_upto FROM subscriptions
WHERE topic = $1 AND (from_seq >= $2 OR read_upto >= $2 OR seen_upto >= $2
    OR user_id IN (SELECT user_id FROM receipts WHERE topic = $1 AND seq BETWEEN $2 AND $3))
"""
"""The subscribers of topic $1 whose offsets the sweep of seqs $2..$3 can move."""

SWEPT_RECEIPTS = """
SELECT user_id, seq, read_at, unread, seen_at, archived_at, deleted FROM receipts
WHERE topic = $1 AND seq = ANY($2::bigint[])
"""


# -- changes ------------------------------------------------------------------

_RECEIPT = {
    "read": (
        "read_at, unread",
        "$3::bigint, 0",
        "read_at = excluded.read_at, unread = 0",
        "v.read_at IS NULL",
    ),
    "unread": (
        "read_at, unread",
        "NULL::bigint, 1",
        "read_at = NULL, unread = 1",
        "v.read_at IS NOT NULL",
    ),
    "seen": ("seen_at", "$3::bigint", "seen_at = excluded.seen_at", "v.seen_at IS NULL"),
    "archive": (
        "archived_at",
        "$3::bigint",
        "archived_at = excluded.archived_at",
        "v.archived_at IS NULL",
    ),
    "unarchive": ("archived_at", "NULL::bigint", "archived_at = NULL", "v.archived_at IS NOT NULL"),
}
"""For each action: receipt columns and values to write, and which items it changes."""

_MARK = """
WITH chosen AS (
    SELECT v.topic, v.seq, v.id, v.read_at, v.seen_at, v.archived_at FROM ({items}) AS v
    WHERE {target} AND {pending} AND (v.expires_at IS NULL OR v.expires_at > $3)
), saved AS (
    INSERT INTO receipts (user_id, topic, seq, {columns})
    SELECT $1, topic, seq, {values} FROM chosen ORDER BY topic, seq
    ON CONFLICT (user_id, topic, seq) DO UPDATE SET {update}
)
SELECT * FROM chosen ORDER BY id
"""

_TARGETS = {
    "ids": "v.id = ANY($2::text[])",
    "up_to": "v.id <= $2",
    "above": "v.topic = $4 AND v.seq > $5 AND v.id <= $2",
}

MARKS = {
    (action, target): _MARK.format(
        items=items("$1"),
        target=_TARGETS[target],
        pending=pending,
        columns=columns,
        values=values,
        update=update,
    )
    for action, (columns, values, update, pending) in _RECEIPT.items()
    for target in _TARGETS
}
"""By (action, target): write receipts for the topic items of user $1 that are
alive at $3 and not already in that state, picked by ids $2, by an id up to
$2, or (``above``) in topic $4 above seq $5 with an id up to $2; returns them
(topic, seq, id and their state before). A mark-all-read or -seen moves
markers instead (``MARKER_BOUNDS`` and what follows)."""

MARKER_BOUNDS = """
SELECT (SELECT min(seq) FROM topic_notifications WHERE topic = $1 AND id > $2) AS newer,
    (SELECT max(seq) FROM topic_notifications WHERE topic = $1) AS top
"""
"""Where a mark up to id $2 can put topic $1's marker: below the first item
with a larger id (ids are made on many nodes, seqs at commit)."""

_PENDING = """
SELECT v.topic, v.seq, v.id, v.read_at, v.seen_at, v.archived_at, v.expires_at
FROM ({subs}) AS s, LATERAL ({view}) AS v
WHERE s.topic = $2 AND v.{action}_at IS NULL AND {where}
"""

PENDING = {
    action: _PENDING.format(
        subs=subs("$1"), view=view("$1"), action=action, where="v.seq > $3 AND v.seq <= $4"
    )
    for action in ("read", "seen")
}
"""User $1's items of topic $2 between seqs $3 (exclusive) and $4 not yet read
(or seen): what moving the marker from $3 to $4 reads."""

PENDING_UNREAD = _PENDING.format(
    subs=subs("$1"),
    view=view("$1"),
    action="read",
    where="v.seq <= $3 AND v.seq IN"
    " (SELECT seq FROM receipts WHERE user_id = $1 AND topic = $2 AND unread = 1)",
)
"""User $1's items of topic $2 at or below seq $3 marked unread one by one."""

CLEAR_UNREAD = """
UPDATE receipts AS r SET unread = 0 FROM (
    SELECT c.seq FROM receipts AS c
    WHERE c.user_id = $1 AND c.topic = $2 AND c.seq <= $3 AND c.unread = 1
    ORDER BY c.seq FOR UPDATE OF c
) AS l
WHERE r.user_id = $1 AND r.topic = $2 AND r.seq = l.seq
"""
"""A mark-all-read also reads again the items marked unread one by one."""

SET_MARKER = {
    action: f"""
    INSERT INTO subscriptions AS m
        (user_id, topic, from_seq, created_at, {action}_upto, {action}_upto_at)
    VALUES ($1, $2, 0, $4, $3, $4)
    ON CONFLICT (user_id, topic) DO UPDATE
    SET {action}_upto = greatest(m.{action}_upto, excluded.{action}_upto),
        {action}_upto_at = excluded.{action}_upto_at
    """
    for action in ("read", "seen")
}

DELETE = f"""
WITH chosen AS (
    SELECT v.topic, v.seq, v.id, v.read_at, v.seen_at, v.archived_at FROM ({items("$1")}) AS v
    WHERE v.id = ANY($2::text[]) AND (v.expires_at IS NULL OR v.expires_at > $3)
), saved AS (
    INSERT INTO receipts (user_id, topic, seq, deleted)
    SELECT $1, topic, seq, 1 FROM chosen ORDER BY topic, seq
    ON CONFLICT (user_id, topic, seq) DO UPDATE SET deleted = 1
)
SELECT * FROM chosen ORDER BY id
"""
"""Hide topic items $2 alive at $3 from user $1's inbox only; returns them
(with their state before)."""

_RECEIPTS_OF = """
DELETE FROM receipts AS r USING (
    SELECT c.user_id, c.topic, c.seq FROM receipts AS c WHERE {where}
    ORDER BY c.user_id, c.topic, c.seq FOR UPDATE OF c
) AS l
WHERE r.user_id = l.user_id AND r.topic = l.topic AND r.seq = l.seq
"""

UNSUBSCRIBE = "DELETE FROM subscriptions WHERE user_id = $1 AND topic = $2"

FORGET_TOPIC = _RECEIPTS_OF.format(where="c.user_id = $1 AND c.topic = $2")
"""The receipts of user $1 in topic $2 (gone with the subscription)."""

ERASE_SUBSCRIPTIONS = "DELETE FROM subscriptions WHERE user_id = $1"

ERASE_RECEIPTS = _RECEIPTS_OF.format(where="c.user_id = $1")

# -- topic streams ------------------------------------------------------------

ADVANCE_TOPICS = """
INSERT INTO topics AS t (topic, head, alive)
SELECT u, n, n FROM unnest($1::text[], $2::bigint[]) AS x(u, n) ORDER BY u
ON CONFLICT (topic) DO UPDATE SET head = t.head + excluded.head, alive = t.alive + excluded.alive
RETURNING topic, head
"""
"""Add $2[i] to the head (and the alive count) of topic $1[i]; returns the new heads. As with
``streams``, the row lock is held to commit: topic seqs are gapless and in
commit order across nodes."""

INSERT_NOTIFICATIONS = """
INSERT INTO topic_notifications
    (topic, seq, id, sender, message, data, tags, created_at, expires_at)
SELECT p, s, i, f, m, d, ARRAY(SELECT jsonb_array_elements_text(g::jsonb)), c, e
FROM unnest(
    $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::bigint[], $9::bigint[]
) AS x(p, s, i, f, m, d, g, c, e)
"""
"""Tags travel as one JSON array per row ($7, NULL for none)."""

READ_TOPIC = """
SELECT t.head, t.trimmed, n.*
FROM topics AS t LEFT JOIN LATERAL (
    SELECT seq, id, sender, message, data, tags, created_at, expires_at
    FROM topic_notifications
    WHERE topic = t.topic AND seq > $2 AND (expires_at IS NULL OR expires_at > $3)
    ORDER BY seq LIMIT $4
) AS n ON true
WHERE t.topic = $1
ORDER BY n.seq
"""
"""One statement, one snapshot: no row for a topic never published to; one
row with NULL item columns when nothing follows $2."""

SUBSCRIBE = """
INSERT INTO subscriptions (user_id, topic, from_seq, created_at, total_off, unread_off, unseen_off)
SELECT u, $2, $3, $4, -$5::bigint, -$5::bigint, -$5::bigint
FROM unnest($1::text[]) AS x(u) ORDER BY u
ON CONFLICT (user_id, topic) DO NOTHING
"""
"""Users $1 join topic $2 from its head $3, when $5 items are alive (none of
them theirs); a user already in is left as is."""

STARTS = """
SELECT user_id, from_seq FROM subscriptions WHERE topic = $2 AND user_id = ANY($1::text[])
"""

SUBSCRIPTIONS = "SELECT topic, from_seq FROM subscriptions WHERE user_id = $1 ORDER BY topic"

EXPIRING = """
SELECT topic, seq FROM topic_notifications
WHERE expires_at IS NOT NULL AND expires_at <= $1
ORDER BY expires_at, topic, seq LIMIT $2
"""
"""Candidates only, as for personal items; ``DELETE_EXPIRED`` removes them."""

DELETE_EXPIRED = """
DELETE FROM topic_notifications AS t USING (
    SELECT c.topic, c.seq FROM topic_notifications AS c
    JOIN unnest($1::text[], $2::bigint[]) AS x(topic, seq) ON c.topic = x.topic AND c.seq = x.seq
    WHERE c.expires_at <= $3
    ORDER BY c.topic, c.seq FOR UPDATE OF c
) AS l
WHERE t.topic = l.topic AND t.seq = l.seq
RETURNING t.topic, t.seq, t.id
"""
"""Returns only what this transaction removed (another sweep may take some first)."""

DELETE_EXPIRED_RECEIPTS = _RECEIPTS_OF.format(
    where="(c.topic, c.seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))"
)

TRIM_TOPICS = """
UPDATE topics AS t SET trimmed = greatest(t.trimmed, x.seq), alive = t.alive - x.n
FROM (
    SELECT topic, max(seq) AS seq, count(*) AS n
    FROM unnest($1::text[], $2::bigint[]) AS u(topic, seq) GROUP BY topic
) AS x
WHERE t.topic = x.topic
"""
"""Take the swept seqs out of each topic's ``alive`` and raise its ``trimmed``
to the highest (the sweep holds these rows' locks: ``LOCK_SWEPT``)."""

EXPORT_SUBSCRIPTIONS = """
SELECT topic, from_seq, read_upto, seen_upto FROM subscriptions WHERE user_id = $1
ORDER BY topic
"""

EXPORT_RECEIPTS = """
SELECT topic, seq, read_at, unread, seen_at, archived_at, deleted FROM receipts
WHERE user_id = $1 ORDER BY topic, seq
"""


def export(subscriptions: list[Any], receipts: list[Any]) -> dict[str, Any]:
    """The topic part of a user's export, as SQLite gives it."""
    return {
        "subscriptions": [
            {
                "topic": row["topic"],
                "fromSeq": row["from_seq"],
                "readUpTo": row["read_upto"],
                "seenUpTo": row["seen_upto"],
            }
            for row in subscriptions
        ],
        "receipts": [
            {
                "topic": row["topic"],
                "seq": row["seq"],
                "readAt": row["read_at"],
                "unread": row["unread"],
                "seenAt": row["seen_at"],
                "archivedAt": row["archived_at"],
                "deleted": row["deleted"],
            }
            for row in receipts
        ],
    }
