"""The SQLite write path: a batch of requests stored in the writer's transaction.

Each recipient's next seq is assigned from the stream's head inside the
transaction (one writer thread, so no two batches interleave), idempotency
keys seen before answer with their first result, and every counter a new
item moves (``streams``, ``topics.alive``) moves in the same statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from tidings.core.models import Notification, PublishRequest, PublishResult
from tidings.store.base import IDEMPOTENCY_TTL_MS
from tidings.store.batch import committed, conflict, duplicate, first_answer, now_ms, repeat

CHUNK = 900
"""Parameters per ``IN (...)`` list: under SQLite's default limit of 999."""


def assign(
    conn: sqlite3.Connection, batch: list[PublishRequest]
) -> list[PublishResult | Exception]:
    users = list({user for request in batch for user in request.recipients})
    heads = read_heads(conn, users)
    known = _known_keys(conn, batch)
    rows: list[tuple[Any, ...]] = []
    topic_rows: list[tuple[Any, ...]] = []
    topic_heads: dict[str, int] = {}
    added: dict[str, int] = {}
    key_rows: list[tuple[Any, ...]] = []
    results: list[PublishResult | Exception] = []
    for request in batch:
        key = (request.sender or "", request.idempotency_key)
        if request.idempotency_key is not None and key in known:
            fingerprint, earlier = known[key]
            if fingerprint != request.fingerprint:
                results.append(conflict(request))
            else:
                results.append(earlier)
            continue
        data = orjson.dumps(request.data).decode() if request.data is not None else None
        tags = orjson.dumps(request.tags).decode() if request.tags else None
        # One row per recipient, built straight from the request's fields.
        seqs = []
        fields = (request.id, request.sender, request.message, data, request.created_at, tags)
        for user in request.recipients:
            seq = heads[user] = heads.get(user, 0) + 1
            added[user] = added.get(user, 0) + 1
            seqs.append((user, seq))
            rows.append((user, seq, *fields, request.expires_at))
        if request.topic is not None:
            topic = request.topic
            if topic not in topic_heads:
                row = conn.execute("SELECT head FROM topics WHERE topic = ?", (topic,))
                topic_heads[topic] = (row.fetchone() or (0,))[0]
            topic_seq = topic_heads[topic] = topic_heads[topic] + 1
            topic_rows.append(
                (
                    topic,
                    topic_seq,
                    request.id,
                    request.sender,
                    request.message,
                    data,
                    tags,
                    request.created_at,
                    request.expires_at,
                )
            )
            stored: tuple[Notification, ...] = (request.topic_notification(topic_seq),)
        else:
            topic_seq = 0
            stored = tuple([request.notification_for(u, s) for u, s in seqs])
        result = committed(request, seqs, stored, topic_seq)
        results.append(result)
        if request.idempotency_key is not None:
            key_rows.append((*key, request.fingerprint, first_answer(result), now_ms()))
            known[key] = (request.fingerprint, repeat(result))
    conn.executemany(
        "INSERT INTO notifications (user_id, seq, id, sender, message, data, created_at,"
        " tags, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    # A new item is unread and unseen: every counter grows by what was added.
    conn.executemany(
        "INSERT INTO streams (user_id, head, total, unread, unseen) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET head = excluded.head,"
        " total = total + excluded.total, unread = unread + excluded.unread,"
        " unseen = unseen + excluded.unseen",
        [(user, heads[user], n, n, n) for user, n in added.items()],
    )
    if topic_rows:
        conn.executemany(
            "INSERT INTO topic_notifications (topic, seq, id, sender, message, data, tags,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            topic_rows,
        )
        # Each new row is alive: ``alive`` grows by how far the head moved.
        conn.executemany(
            "INSERT INTO topics (topic, head, alive) VALUES (?1, ?2, ?2)"
            " ON CONFLICT (topic) DO UPDATE SET"
            " alive = alive + excluded.head - head, head = excluded.head",
            list(topic_heads.items()),
        )
    if key_rows:
        conn.executemany(
            "INSERT OR REPLACE INTO idempotency"
            " (sender, key, fingerprint, response, created_at) VALUES (?, ?, ?, ?, ?)",
            key_rows,
        )
    return results


def read_heads(conn: sqlite3.Connection, users: Sequence[str]) -> dict[str, int]:
    heads: dict[str, int] = {}
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        heads.update(
            conn.execute(
                f"SELECT user_id, head FROM streams WHERE user_id IN ({marks})", chunk
            ).fetchall()
        )
    return heads


def _known_keys(
    conn: sqlite3.Connection, batch: list[PublishRequest]
) -> dict[tuple[str, str | None], tuple[str, PublishResult]]:
    known: dict[tuple[str, str | None], tuple[str, PublishResult]] = {}
    horizon = now_ms() - IDEMPOTENCY_TTL_MS
    for request in batch:
        if request.idempotency_key is None:
            continue
        row = conn.execute(
            "SELECT fingerprint, response FROM idempotency"
            " WHERE sender = ? AND key = ? AND created_at >= ?",
            (request.sender or "", request.idempotency_key, horizon),
        ).fetchone()
        if row is not None:
            known[(request.sender or "", request.idempotency_key)] = (
                row[0],
                duplicate(row[1]),
            )
    return known
