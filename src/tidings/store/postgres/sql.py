"""Every statement the PostgreSQL store sends, but the migrations (``schema.py``).

Statements take whole batches as arrays (``unnest``), so a batch of any size
costs one round trip per statement. Rows shared between nodes are locked in
one global order: idempotency keys (``CLAIM_KEYS``, ``ERASE_KEYS``) before
streams (``ADVANCE_HEADS``, ``LOCK_STREAMS``) before topics
(``topics.ADVANCE_TOPICS``, ``TRIM_TOPICS``), each set sorted by the
database; a user's notifications, subscriptions and receipts change only under
their stream's lock, and receipts are locked in (user, topic, seq) order. No
two nodes can deadlock.

Inbox listings and counts are assembled per filter by ``list_query`` and
``count_query``; every value travels as a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidings.core.inbox import InboxFilter, InboxQuery
from tidings.store.postgres import topics

CLAIM_KEYS = """
INSERT INTO idempotency AS i (sender, key, fingerprint, response, created_at)
SELECT s, k, f, ''::bytea, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, k, f) ORDER BY s, k
ON CONFLICT (sender, key) DO UPDATE
SET fingerprint = excluded.fingerprint, response = excluded.response,
    created_at = excluded.created_at
WHERE i.created_at < $5
RETURNING sender, key
"""
"""Insert (sender, key, fingerprint) rows stamped $4, taking over rows older than
$5; returns the keys claimed. A key another transaction holds makes this wait
for it, then stay unclaimed if that transaction committed."""

READ_KEYS = """
SELECT i.sender, i.key, i.fingerprint, i.response
FROM idempotency AS i JOIN unnest($1::text[], $2::text[]) AS t(s, k)
ON i.sender = t.s AND i.key = t.k
"""

SAVE_ANSWERS = """
UPDATE idempotency AS i SET response = t.r
FROM unnest($1::text[], $2::text[], $3::bytea[]) AS t(s, k, r)
WHERE i.sender = t.s AND i.key = t.k
"""

ADVANCE_HEADS = """
INSERT INTO streams AS s (user_id, head, total, unread, unseen)
SELECT u, n, n, n, n FROM unnest($1::text[], $2::bigint[]) AS t(u, n) ORDER BY u
ON CONFLICT (user_id) DO UPDATE SET head = s.head + excluded.head,
    total = s.total + excluded.total, unread = s.unread + excluded.unread,
    unseen = s.unseen + excluded.unseen
RETURNING user_id, head
"""
"""Add $2[i] to the head of stream $1[i], and to its counters (a new item is
unread and unseen); returns the new heads. The row locks are held until
commit, so a writer of the same stream on another node waits and then starts
from the committed head: seqs are gapless and in commit order."""

INSERT_NOTIFICATIONS = """
INSERT INTO notifications
    (user_id, seq, id, sender, message, data, created_at, tags, expires_at)
SELECT u, s, i, f, m, d, c, ARRAY(SELECT jsonb_array_elements_text(g::jsonb)), e
FROM unnest(
    $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
    $8::text[], $9::bigint[]
) AS t(u, s, i, f, m, d, c, g, e)
"""
"""Tags travel as one JSON array per row ($8, NULL for none): an array of
arrays would be flattened by ``unnest``."""

PRUNE_KEYS = """
WITH doomed AS (
    SELECT sender, key FROM idempotency WHERE created_at < $1 FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency AS i USING doomed AS d WHERE i.sender = d.sender AND i.key = d.key
"""
"""Skips rows a writer holds, so pruning never waits for or deadlocks with one."""

HEADS = "SELECT user_id, head FROM streams WHERE user_id = ANY($1::text[])"

# -- inbox --------------------------------------------------------------------

COLUMNS = (
    "seq, id, sender, message, data, tags, created_at, expires_at, read_at, seen_at, archived_at"
)
ALIVE = "(expires_at IS NULL OR expires_at > {now})"

HISTORY = f"""
SELECT s.head, s.trimmed, n.*
FROM streams AS s LEFT JOIN LATERAL (
    SELECT {COLUMNS} FROM notifications
    WHERE user_id = s.user_id AND seq > $2 AND seq < $3 AND {ALIVE.format(now="$4")}
    ORDER BY seq LIMIT $5
) AS n ON true
WHERE s.user_id = $1
ORDER BY n.seq
"""
"""One statement, hence one snapshot: the items and the head always agree. No
row for a stream never written; one row with NULL item columns for a stream
with nothing between $2 and $3 that is alive at $4."""

_UNSWEPT = """
    SELECT count(*) AS total, count(*) FILTER (WHERE read_at IS NULL) AS unread,
        count(*) FILTER (WHERE seen_at IS NULL) AS unseen
    FROM notifications AS n
    WHERE n.user_id = {user} AND n.expires_at IS NOT NULL AND n.expires_at <= {now}
        AND n.archived_at IS NULL
"""
"""What the counters of ``user`` still include but expired by ``now``: the
sweeper has not removed it yet, and a read must not count it."""

COUNTS = f"""
SELECT u.user_id,
    coalesce(s.total, 0) - x.total + y.total AS total,
    coalesce(s.unread, 0) - x.unread + y.unread AS unread,
    coalesce(s.unseen, 0) - x.unseen + y.unseen AS unseen
FROM unnest($1::text[]) AS u(user_id)
LEFT JOIN streams AS s ON s.user_id = u.user_id
CROSS JOIN LATERAL ({_UNSWEPT.format(user="u.user_id", now="$2")}) AS x
CROSS JOIN LATERAL ({topics.counts("u.user_id", "$2")}) AS y
"""
"""The exact counts of the users $1 at time $2, in one snapshot: the personal
counters less what expired unswept, plus the topic items counted now. One row
per user, also for a user with no personal stream."""

ADJUST_COUNTS = f"""
WITH moved AS (
    UPDATE streams AS s SET total = s.total + t.total, unread = s.unread + t.unread,
        unseen = s.unseen + t.unseen, trimmed = greatest(s.trimmed, t.trimmed)
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
        AS t(user_id, total, unread, unseen, trimmed)
    WHERE s.user_id = t.user_id
    RETURNING s.user_id, s.total, s.unread, s.unseen
)
SELECT m.user_id, m.total - x.total + y.total AS total,
    m.unread - x.unread + y.unread AS unread, m.unseen - x.unseen + y.unseen AS unseen
FROM moved AS m
CROSS JOIN LATERAL ({_UNSWEPT.format(user="m.user_id", now="$6")}) AS x
CROSS JOIN LATERAL ({topics.counts("m.user_id", "$6")}) AS y
"""
"""Move the counters of users $1 by $2..$4 and raise their ``trimmed`` to $5;
returns the exact counts after that at time $6."""

ENSURE_STREAM = """
INSERT INTO streams (user_id, head) VALUES ($1, 0) ON CONFLICT (user_id) DO NOTHING
"""
"""A user whose inbox holds only topic items has no stream yet; one with head 0
gives ``LOCK_STREAMS`` a row to lock (seqs still start at 1)."""

LOCK_STREAMS = """
SELECT user_id, head FROM streams WHERE user_id = ANY($1::text[]) ORDER BY user_id
FOR NO KEY UPDATE
"""
"""Lock these users' streams rows, sorted (rows are locked after the sort), as
``ADVANCE_HEADS`` does. Held to commit, it serializes every change of their
notifications, on any node: counters move once per real change and the
counts read after a change are the counts right after it."""

_MARK = """
WITH changed AS (
    UPDATE notifications SET {column} = $3
    WHERE user_id = $1 AND {target} AND {pending} AND (expires_at IS NULL OR expires_at > $4)
    RETURNING id, read_at, seen_at, archived_at
)
SELECT * FROM changed ORDER BY id
"""
_MARK_COLUMNS = {
    "read": ("read_at", True),
    "unread": ("read_at", False),
    "seen": ("seen_at", True),
    "archive": ("archived_at", True),
    "unarchive": ("archived_at", False),
}
MARKS = {
    (action, by_ids): _MARK.format(
        column=column,
        target="id = ANY($2::text[])" if by_ids else "id <= $2",
        pending=f"{column} IS {'' if stamps else 'NOT '}NULL",
    )
    for action, (column, stamps) in _MARK_COLUMNS.items()
    for by_ids in (True, False)
}
"""By (action, by ids or up to an id): set the column to $3 (a time, or NULL)
on the items of user $1 alive at $4 and not already in that state; returns
them, by id."""

MARK_STAMPS = {action for action, (_, stamps) in _MARK_COLUMNS.items() if stamps}
"""The actions that set a time (the others clear one)."""

DELETE_ITEMS = """
WITH gone AS (
    DELETE FROM notifications WHERE user_id = $1 AND id = ANY($2::text[])
        AND (expires_at IS NULL OR expires_at > $3)
    RETURNING id, read_at, seen_at, archived_at
)
SELECT * FROM gone ORDER BY id
"""

EXPIRING = """
SELECT user_id, seq FROM notifications
WHERE expires_at IS NOT NULL AND expires_at <= $1
ORDER BY expires_at, user_id, seq LIMIT $2
"""
"""Candidates only: they are deleted under their users' stream locks by
``DELETE_EXPIRED``, which returns only what this transaction removed."""

DELETE_EXPIRED = """
DELETE FROM notifications AS n USING unnest($1::text[], $2::bigint[]) AS t(user_id, seq)
WHERE n.user_id = t.user_id AND n.seq = t.seq AND n.expires_at <= $3
RETURNING n.user_id, n.seq, n.id, n.read_at, n.seen_at, n.archived_at
"""

TRIM_STREAMS = """
DELETE FROM notifications AS n USING (
    SELECT x.user_id, x.seq FROM streams AS s
    CROSS JOIN LATERAL (
        SELECT user_id, seq FROM notifications
        WHERE user_id = s.user_id AND seq <= s.head - $2 ORDER BY seq LIMIT $3
    ) AS x
    WHERE s.user_id = ANY($1::text[]) AND s.head - s.trimmed > $2
) AS t
WHERE n.user_id = t.user_id AND n.seq = t.seq
RETURNING n.user_id, n.seq, n.id, n.read_at, n.seen_at, n.archived_at
"""
"""At most $3 rows of each stream more than $2 below its head, oldest first,
deleted under the stream locks the caller holds."""

ERASE_KEYS = """
DELETE FROM idempotency WHERE sender = $1 AND key IN (
    SELECT key FROM idempotency WHERE sender = $1 ORDER BY key FOR UPDATE
)
"""
"""The user's idempotency keys, locked in the order ``CLAIM_KEYS`` locks them."""

ERASE_ITEMS = "DELETE FROM notifications WHERE user_id = $1"

ERASE_STREAM = """
UPDATE streams SET trimmed = head, total = 0, unread = 0, unseen = 0 WHERE user_id = $1
"""
"""Only the head is kept, so a seq is never reused for this user id."""

EXPORT_ITEMS = f"SELECT {COLUMNS} FROM notifications WHERE user_id = $1 ORDER BY seq"

HEAD = "SELECT head FROM streams WHERE user_id = $1"


def storable(text: str) -> bool:
    """False for text no stored row can hold: NUL characters, unpaired surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Args:
    """The positional parameters of a statement being assembled: ``arg(value)``
    adds one and returns its placeholder."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _conditions(f: InboxFilter, arg: Args) -> list[str]:
    where = []
    if f.read is not None:
        where.append(f"read_at IS {'NOT ' if f.read else ''}NULL")
    if f.seen is not None:
        where.append(f"seen_at IS {'NOT ' if f.seen else ''}NULL")
    if f.archived != "include":
        where.append(f"archived_at IS {'NOT ' if f.archived == 'only' else ''}NULL")
    if f.tags:
        # A tag no row can hold matches nothing; "false" keeps the filter from vanishing.
        tags = [tag for tag in f.tags if storable(tag)]
        where.append(f"tags && {arg(tags)}::text[]" if tags else "false")
    if f.created_after is not None:
        where.append(f"created_at >= {arg(f.created_after)}")
    if f.created_before is not None:
        where.append(f"created_at < {arg(f.created_before)}")
    return where


def list_query(user_id: str, query: InboxQuery, now: int) -> tuple[str, list[Any]]:
    """One page of ``query`` plus one row (to tell whether more follow), in id
    order, ``topic`` NULL for a personal item: a keyset scan of
    ``notifications_by_id`` and one of ``topic_notifications_by_id`` per
    subscribed topic, each up to the page size, merged; however deep the page."""
    arg = Args(user_id)
    where = [ALIVE.format(now=arg(now)), *_conditions(query.filter, arg)]
    if query.after is not None:
        where.append(f"id {'<' if query.newest_first else '>'} {arg(query.after)}")
    order = "DESC" if query.newest_first else "ASC"
    limit = arg(query.limit + 1)
    conditions = " AND ".join(where)
    # The topic filter is one CASE, which PostgreSQL estimates at 1/2 (see
    # ``topics._VIEW``), so it reads each topic's id index in order.
    statement = f"""
    (SELECT {COLUMNS}, NULL::text AS topic FROM notifications
     WHERE user_id = $1 AND {conditions} ORDER BY id {order} LIMIT {limit})
    UNION ALL
    (SELECT v.* FROM ({topics.subs("$1")}) AS s, LATERAL (
        SELECT {COLUMNS}, topic FROM ({topics.view("$1")}) AS w
        WHERE CASE WHEN {conditions} THEN true ELSE false END ORDER BY id {order} LIMIT {limit}
    ) AS v)
    ORDER BY id {order} LIMIT {limit}
    """
    return statement, arg.values


def count_query(user_id: str, filters: Sequence[InboxFilter], now: int) -> tuple[str, list[Any]]:
    """One count per filter over the user's personal and topic items, in one
    statement (hence one snapshot)."""
    arg = Args(user_id, now)
    columns = []
    for f in filters:
        where = _conditions(f, arg)
        columns.append(f"count(*) FILTER (WHERE {' AND '.join(where)})" if where else "count(*)")
    fields = "read_at, seen_at, archived_at, tags, created_at"
    statement = f"""
    SELECT {", ".join(columns)} FROM (
        SELECT {fields} FROM notifications WHERE user_id = $1 AND {ALIVE.format(now="$2")}
        UNION ALL
        SELECT {fields} FROM ({topics.items("$1")}) AS i WHERE {ALIVE.format(now="$2")}
    ) AS items
    """
    return statement, arg.values
