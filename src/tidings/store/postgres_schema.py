"""PostgreSQL schema and statements: every piece of SQL the store sends.

The tables mirror the SQLite ones column for column, so both backends give the
same results. Several nodes may start at once against an empty database: the
migration runs under a transaction-scoped advisory lock keyed by the schema
name, so one node migrates and the others wait, then find the work done.

Statements take whole batches as arrays (``unnest``), so a batch of any size
costs one round trip per statement. The two that lock rows shared between
nodes (``CLAIM_KEYS``, then ``ADVANCE_HEADS``) lock them in sorted order, and
every write transaction runs them in that order: no two nodes can deadlock.
"""

from __future__ import annotations

from typing import Any

MIGRATIONS: list[str] = [
    # 1: per-user streams, their notifications, idempotency keys.
    """
    CREATE TABLE streams (
        user_id TEXT PRIMARY KEY,
        head BIGINT NOT NULL,
        trimmed BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE notifications (
        user_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT,
        message TEXT NOT NULL,
        data TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, seq)
    );
    CREATE INDEX notifications_by_id ON notifications (user_id, id);
    CREATE TABLE idempotency (
        sender TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        response BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (sender, key)
    );
    CREATE INDEX idempotency_by_age ON idempotency (created_at);
    """,
]


async def migrate(conn: Any, *, schema: str | None) -> int:
    """Apply the migrations the database is missing; returns the schema version.

    ``conn`` is an asyncpg connection whose ``search_path`` already names
    ``schema`` (when one is given); the schema is created here if missing.
    ``schema`` must be a validated plain identifier: it is written into SQL.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock("
            "hashtext('tidings.migrate:' || coalesce($1::text, current_schema(), '')))",
            schema,
        )
        if schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT version FROM schema_version")
        if version is None:
            version = 0
            await conn.execute("INSERT INTO schema_version VALUES (0)")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("UPDATE schema_version SET version = $1", number)
    return len(MIGRATIONS)


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
INSERT INTO streams AS s (user_id, head)
SELECT u, n FROM unnest($1::text[], $2::bigint[]) AS t(u, n) ORDER BY u
ON CONFLICT (user_id) DO UPDATE SET head = s.head + excluded.head
RETURNING user_id, head
"""
"""Add $2[i] to the head of stream $1[i]; returns the new heads. The row locks
are held until commit, so a writer of the same stream on another node waits
and then starts from the committed head: seqs are gapless and in commit order."""

INSERT_NOTIFICATIONS = """
INSERT INTO notifications (user_id, seq, id, sender, message, data, created_at)
SELECT * FROM unnest(
    $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]
)
"""

PRUNE_KEYS = """
WITH doomed AS (
    SELECT sender, key FROM idempotency WHERE created_at < $1 FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency AS i USING doomed AS d WHERE i.sender = d.sender AND i.key = d.key
"""
"""Skips rows a writer holds, so pruning never waits for or deadlocks with one."""

READ_STREAM = """
SELECT s.head, s.trimmed, n.seq, n.id, n.sender, n.message, n.data, n.created_at
FROM streams AS s LEFT JOIN LATERAL (
    SELECT seq, id, sender, message, data, created_at FROM notifications
    WHERE user_id = s.user_id AND seq > $2 ORDER BY seq LIMIT $3
) AS n ON true
WHERE s.user_id = $1
ORDER BY n.seq
"""
"""One statement, hence one snapshot: the items and the head always agree. No
row for a stream never written; one row with NULL item columns for a stream
with nothing after $2."""

HEADS = "SELECT user_id, head FROM streams WHERE user_id = ANY($1::text[])"
