"""PostgreSQL schema: the migrations, run by every node at start-up.

The tables mirror the SQLite ones column for column, so both backends give the
same results. Several nodes may start at once against an empty database: the
migration runs under a transaction-scoped advisory lock keyed by the schema
name, so one node migrates and the others wait, then find the work done.
The statements the store sends are in ``sql.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tidings.store import repair
from tidings.store.base import SchemaTooNew, SchemaVersions


async def remove_unshowable_data(conn: Any) -> None:
    """Migration 5 (``store/repair.py``)."""
    repaired = 0
    for table, key in repair.STREAM_TABLES:
        suspects = f"SELECT {key}, seq, data FROM {table} WHERE data IS NOT NULL AND "
        brackets = "length(data) - length(translate(data, '{[', '')) > $1"
        rows = await conn.fetch(suspects + brackets, repair.SUSPECTS)
        bad = repair.unshowable_keys(tuple(row) for row in rows)
        await conn.executemany(f"UPDATE {table} SET data = NULL WHERE {key} = $1 AND seq = $2", bad)
        repaired += len(bad)
    repair.report(repaired)


MIGRATIONS: list[str | Callable[[Any], Awaitable[None]]] = [
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
    # 2: the inbox: per-item state, tags, expiry; exact per-user counters.
    # Ids compare bytewise, as in SQLite, whatever the database's locale.
    """
    ALTER TABLE streams
        ADD COLUMN total BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN unread BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN unseen BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE notifications
        ALTER COLUMN id TYPE TEXT COLLATE "C",
        ADD COLUMN tags TEXT[] NOT NULL DEFAULT '{}',
        ADD COLUMN expires_at BIGINT,
        ADD COLUMN read_at BIGINT,
        ADD COLUMN seen_at BIGINT,
        ADD COLUMN archived_at BIGINT;
    CREATE INDEX notifications_expiry ON notifications (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE INDEX notifications_user_expiry ON notifications (user_id, expires_at)
        WHERE expires_at IS NOT NULL;
    UPDATE streams AS s SET total = c.n, unread = c.n, unseen = c.n
    FROM (SELECT user_id, count(*) AS n FROM notifications GROUP BY user_id) AS c
    WHERE c.user_id = s.user_id;
    """,
    # 3: topics, stored once; per-user subscriptions, read markers and receipts.
    """
    CREATE TABLE topics (
        topic TEXT PRIMARY KEY,
        head BIGINT NOT NULL,
        trimmed BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE topic_notifications (
        topic TEXT NOT NULL,
        seq BIGINT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        sender TEXT,
        message TEXT NOT NULL,
        data TEXT,
        tags TEXT[] NOT NULL DEFAULT '{}',
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (topic, seq)
    );
    CREATE INDEX topic_notifications_by_id ON topic_notifications (topic, id);
    CREATE INDEX topic_notifications_expiry ON topic_notifications (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE TABLE subscriptions (
        user_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        from_seq BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        read_upto BIGINT NOT NULL DEFAULT 0,
        read_upto_at BIGINT,
        seen_upto BIGINT NOT NULL DEFAULT 0,
        seen_upto_at BIGINT,
        PRIMARY KEY (user_id, topic)
    );
    CREATE INDEX subscriptions_by_topic ON subscriptions (topic, user_id);
    CREATE TABLE receipts (
        user_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        seq BIGINT NOT NULL,
        read_at BIGINT,
        unread INTEGER NOT NULL DEFAULT 0,
        seen_at BIGINT,
        archived_at BIGINT,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, topic, seq)
    );
    CREATE INDEX receipts_by_topic ON receipts (topic, seq);
    """,
    # 4: topic counts kept, not counted: each topic's alive items, and per
    # subscription what of them the user does not count (see core.counters).
    """
    ALTER TABLE topics ADD COLUMN alive BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions
        ADD COLUMN total_off BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN unread_off BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN unseen_off BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX topic_notifications_topic_expiry ON topic_notifications (topic, expires_at)
        WHERE expires_at IS NOT NULL;
    UPDATE topics AS t SET alive = (
        SELECT count(*) FROM topic_notifications AS n WHERE n.topic = t.topic
    );
    INSERT INTO subscriptions (user_id, topic, from_seq, created_at)
        SELECT DISTINCT user_id, topic, 0, 0 FROM receipts WHERE topic = 'everyone'
        ON CONFLICT (user_id, topic) DO NOTHING;
    UPDATE subscriptions AS s SET
        total_off = -x.h, unread_off = -x.h_or_read, unseen_off = -x.h_or_seen
    FROM subscriptions AS k CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE h) AS h,
            count(*) FILTER (WHERE h OR rd) AS h_or_read,
            count(*) FILTER (WHERE h OR sn) AS h_or_seen
        FROM (
            SELECT t.seq <= k.from_seq OR coalesce(r.deleted, 0) = 1
                    OR r.archived_at IS NOT NULL AS h,
                coalesce(r.unread, 0) = 0
                    AND (r.read_at IS NOT NULL OR t.seq <= k.read_upto) AS rd,
                r.seen_at IS NOT NULL OR t.seq <= k.seen_upto AS sn
            FROM topic_notifications AS t
            LEFT JOIN receipts AS r
                ON r.user_id = k.user_id AND r.topic = t.topic AND r.seq = t.seq
            WHERE t.topic = k.topic
        ) AS state
    ) AS x
    WHERE s.user_id = k.user_id AND s.topic = k.topic;
    """,
    # 5: data nested too deep to be shown is removed (see remove_unshowable_data).
    remove_unshowable_data,
    # 6: revoked users (every token issued until then) and tokens (by jti).
    """
    CREATE TABLE revocations (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        revoked_at BIGINT NOT NULL,
        PRIMARY KEY (kind, subject)
    );
    """,
]


async def version(conn: Any) -> int:
    """The database's schema version (0: none yet); reads only."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    found = await conn.fetchval("SELECT version FROM schema_version")
    return int(found or 0)


async def migrate(conn: Any, *, schema: str | None) -> SchemaVersions:
    """Apply the migrations the database is missing; ``SchemaTooNew`` if it is
    ahead of this code.

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
        if version is not None and version > len(MIGRATIONS):
            raise SchemaTooNew(version, len(MIGRATIONS))
        if version is None:
            version = 0
            await conn.execute("INSERT INTO schema_version VALUES (0)")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            if callable(script):
                await script(conn)
            else:
                await conn.execute(script)
            await conn.execute("UPDATE schema_version SET version = $1", number)
    return SchemaVersions(version, len(MIGRATIONS))
