"""Connections and transactions of the PostgreSQL store: every driver error
becomes ``Unavailable`` (``faults``), and a transaction PostgreSQL aborted as
a deadlock or serialization failure runs again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from tidings.core.errors import Unavailable
from tidings.store.postgres.faults import connection, transaction

T = TypeVar("T")

RETRIES = 3
"""Attempts for a transaction that PostgreSQL aborted as a deadlock or
serialization failure; with ordered locking neither should happen, but a
retry is harmless."""


class Pooled:
    """The pool, and every operation's way to a connection or a transaction."""

    _pool: Any

    def _open_pool(self) -> Any:
        if self._pool is None:
            raise Unavailable("PostgreSQL store is not open")
        return self._pool

    def _connection(self, failed: str) -> AbstractAsyncContextManager[Any]:
        """A pool connection on which every driver error is ``Unavailable``
        (``postgres_faults``); every operation of the store goes through one."""
        return connection(self._open_pool(), failed)

    async def _fetch(self, statement: str, *args: Any) -> list[Any]:
        async with self._connection("store read failed") as conn:
            return list(await conn.fetch(statement, *args))

    async def _transaction(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        readonly: bool = False,
        failed: str | None = None,
    ) -> T:
        """Run ``fn(conn, *args)`` in one transaction, again if PostgreSQL aborted it."""
        if failed is None:
            failed = "store read failed" if readonly else "store write failed, nothing changed"
        isolation = "repeatable_read" if readonly else "read_committed"
        for attempt in range(1, RETRIES + 1):
            async with self._connection(failed) as conn:
                try:
                    return await transaction(
                        conn, fn, *args, isolation=isolation, readonly=readonly
                    )
                except asyncpg.TransactionRollbackError:
                    if attempt == RETRIES:
                        raise
        raise AssertionError("unreachable")
