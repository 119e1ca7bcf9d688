"""Write transactions on SQLite whose failure reports what failed.

When COMMIT fails for lack of space (SQLITE_FULL) or an I/O error, SQLite
may already have rolled the transaction back; a ROLLBACK then fails with
"no transaction is active", and raised from an ``except`` block it would
replace the error that says why nothing was stored. Here the ROLLBACK runs
only for a transaction still open, and its own failure is dropped.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is still open; the error being handled is the one to report."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def write_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: object) -> T:
    """``fn(conn, *args)`` in one ``BEGIN IMMEDIATE`` transaction, committed."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result
