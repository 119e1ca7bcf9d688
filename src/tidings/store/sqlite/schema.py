"""SQLite schema, as numbered migrations applied in order at start-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from tidings.store import repair
from tidings.store.base import SchemaTooNew, SchemaVersions
from tidings.store.sqlite.tx import write_transaction


def remove_unshowable_data(conn: sqlite3.Connection) -> None:
    """Migration 5 (``store/repair.py``)."""
    repaired = 0
    for table, key in repair.STREAM_TABLES:
        suspects = f"SELECT {key}, seq, data FROM {table} WHERE data IS NOT NULL AND "
        brackets = "length(data) - length(replace(replace(data, '{', ''), '[', '')) > ?"
        bad = repair.unshowable_keys(conn.execute(suspects + brackets, (repair.SUSPECTS,)))
        conn.executemany(f"UPDATE {table} SET data = NULL WHERE {key} = ? AND seq = ?", bad)
        repaired += len(bad)
    repair.report(repaired)


MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: per-user streams, their notifications, idempotency keys.
    """
    CREATE TABLE streams (
        user_id TEXT PRIMARY KEY,
        head INTEGER NOT NULL,
        trimmed INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE notifications (
        user_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        sender TEXT,
        message TEXT NOT NULL,
        data TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX notifications_by_id ON notifications (user_id, id);
    CREATE TABLE idempotency (
        sender TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        response BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (sender, key)
    ) WITHOUT ROWID;
    """,
    # 2: the inbox: per-item state, tags, expiry; exact per-user counters.
    """
    ALTER TABLE streams ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streams ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streams ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE notifications ADD COLUMN tags TEXT;
    ALTER TABLE notifications ADD COLUMN expires_at INTEGER;
    ALTER TABLE notifications ADD COLUMN read_at INTEGER;
    ALTER TABLE notifications ADD COLUMN seen_at INTEGER;
    ALTER TABLE notifications ADD COLUMN archived_at INTEGER;
    CREATE INDEX notifications_expiry ON notifications (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE INDEX notifications_user_expiry ON notifications (user_id, expires_at)
        WHERE expires_at IS NOT NULL;
    UPDATE streams SET
        total = (SELECT count(*) FROM notifications n WHERE n.user_id = streams.user_id),
        unread = (SELECT count(*) FROM notifications n WHERE n.user_id = streams.user_id),
        unseen = (SELECT count(*) FROM notifications n WHERE n.user_id = streams.user_id);
    """,
    # 3: topics, stored once; per-user subscriptions, read markers and receipts.
    """
    CREATE TABLE topics (
        topic TEXT PRIMARY KEY,
        head INTEGER NOT NULL,
        trimmed INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE topic_notifications (
        topic TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        sender TEXT,
        message TEXT NOT NULL,
        data TEXT,
        tags TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (topic, seq)
    ) WITHOUT ROWID;
    CREATE INDEX topic_notifications_by_id ON topic_notifications (topic, id);
    CREATE INDEX topic_notifications_expiry ON topic_notifications (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE TABLE subscriptions (
        user_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        from_seq INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        read_upto INTEGER NOT NULL DEFAULT 0,
        read_upto_at INTEGER,
        seen_upto INTEGER NOT NULL DEFAULT 0,
        seen_upto_at INTEGER,
        PRIMARY KEY (user_id, topic)
    ) WITHOUT ROWID;
    CREATE INDEX subscriptions_by_topic ON subscriptions (topic, user_id);
    CREATE TABLE receipts (
        user_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        seq INTEGER NOT NULL,
        read_at INTEGER,
        unread INTEGER NOT NULL DEFAULT 0,
        seen_at INTEGER,
        archived_at INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, topic, seq)
    ) WITHOUT ROWID;
    CREATE INDEX receipts_by_topic ON receipts (topic, seq);
    """,
    # 4: topic counts kept, not counted: each topic's alive items, and per
    # subscription what of them the user does not count (see core.counters).
    """
    ALTER TABLE topics ADD COLUMN alive INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN total_off INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN unread_off INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN unseen_off INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX topic_notifications_topic_expiry ON topic_notifications (topic, expires_at)
        WHERE expires_at IS NOT NULL;
    UPDATE topics SET alive = (
        SELECT count(*) FROM topic_notifications AS t WHERE t.topic = topics.topic
    );
    INSERT INTO subscriptions (user_id, topic, from_seq, created_at)
        SELECT DISTINCT user_id, topic, 0, 0 FROM receipts WHERE topic = 'everyone'
        ON CONFLICT (user_id, topic) DO NOTHING;
    UPDATE subscriptions SET (total_off, unread_off, unseen_off) = (
        SELECT -coalesce(sum(h), 0), -coalesce(sum(h OR rd), 0), -coalesce(sum(h OR sn), 0)
        FROM (
            SELECT t.seq <= subscriptions.from_seq OR coalesce(r.deleted, 0) = 1
                    OR r.archived_at IS NOT NULL AS h,
                coalesce(r.unread, 0) = 0
                    AND (r.read_at IS NOT NULL OR t.seq <= subscriptions.read_upto) AS rd,
                r.seen_at IS NOT NULL OR t.seq <= subscriptions.seen_upto AS sn
            FROM topic_notifications AS t
            LEFT JOIN receipts AS r
                ON r.user_id = subscriptions.user_id AND r.topic = t.topic AND r.seq = t.seq
            WHERE t.topic = subscriptions.topic
        )
    );
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


def version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0: none yet); reads only."""
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> SchemaVersions:
    """Apply the migrations the database is missing, in one transaction;
    ``SchemaTooNew`` if it is ahead of this code."""
    return write_transaction(conn, _migrate)


def _migrate(conn: sqlite3.Connection) -> SchemaVersions:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > len(MIGRATIONS):
        raise SchemaTooNew(version, len(MIGRATIONS))
    if row is None:
        conn.execute("INSERT INTO schema_version VALUES (0)")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        if callable(script):
            script(conn)
        else:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (number,))
    return SchemaVersions(version, len(MIGRATIONS))
