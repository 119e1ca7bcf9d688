"""Revoked users and tokens (``core/revocation.py``): one row per subject; a
later revocation of the same user moves its moment on, never back."""

from __future__ import annotations

import sqlite3

from tidings.core.revocation import Revocation

KEEP = """
INSERT INTO revocations (kind, subject, revoked_at) VALUES (?, ?, ?)
ON CONFLICT (kind, subject) DO UPDATE SET revoked_at = max(revoked_at, excluded.revoked_at)
"""


def keep(conn: sqlite3.Connection, revocation: Revocation) -> None:
    conn.execute(KEEP, (revocation.kind, revocation.subject, revocation.revoked_at_ms))


def load(conn: sqlite3.Connection) -> list[Revocation]:
    rows = conn.execute("SELECT kind, subject, revoked_at FROM revocations").fetchall()
    return [Revocation(kind, subject, at) for kind, subject, at in rows]
