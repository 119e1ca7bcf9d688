"""Revoked users and tokens (``core/revocation.py``): one row per subject; a
later revocation of the same user moves its moment on, never back."""

from __future__ import annotations

from typing import Any

from tidings.core.revocation import Revocation

KEEP = """
INSERT INTO revocations (kind, subject, revoked_at) VALUES ($1, $2, $3)
ON CONFLICT (kind, subject) DO UPDATE
    SET revoked_at = greatest(revocations.revoked_at, excluded.revoked_at)
"""
LOAD = "SELECT kind, subject, revoked_at FROM revocations"


async def keep(conn: Any, revocation: Revocation) -> None:
    await conn.execute(KEEP, revocation.kind, revocation.subject, revocation.revoked_at_ms)


def rows_to_revocations(rows: list[Any]) -> list[Revocation]:
    return [Revocation(row["kind"], row["subject"], row["revoked_at"]) for row in rows]
