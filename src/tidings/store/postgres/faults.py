"""How the PostgreSQL store answers a server it lost: always ``Unavailable``.

asyncpg reports a server that went away through unrelated classes: OSError
subclasses and TimeoutError from the socket, ``PostgresConnectionError``
(``ConnectionDoesNotExistError``, ...) and ``AdminShutdownError`` from the
connection, ``InterfaceError`` and ``InternalClientError`` ("cannot switch
to state ...") from its protocol state machine when the connection died in
the middle of an operation. ``connection`` is the one place that turns them
all into ``Unavailable`` (``unavailable``, HTTP 503), and the ROLLBACK or the
return to the pool that fails after them never replaces the first error.

A COMMIT that got no answer is not a failure like the others: the server may
have committed before it went away. ``transaction`` says so ("outcome
unknown") and returns nothing for it, so a write is acked only when its
COMMIT was answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from tidings.core.errors import Unavailable

T = TypeVar("T")

CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""What asyncpg raises when the server is gone or the connection broke: no
answer came, so a statement in flight may or may not have run."""

UNREACHABLE: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    asyncpg.exceptions.TooManyConnectionsError,
)
"""What opening a connection raises while no server takes it: none listens
yet, it is starting up or shutting down (``CannotConnectNowError``, an
operator intervention), or it has no connection slot free. Anything else
(bad password, no such database) is an answer that waiting will not change."""

DRIVER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_LOST, asyncpg.PostgresError)
"""The above, and the errors the server answers a statement with."""

OUTCOME_UNKNOWN = (
    "store write failed at COMMIT, outcome unknown: the write may have been stored;"
    " retry with the same idempotency key"
)


def reason(exc: BaseException) -> str:
    """The driver's words, or its class name when it has none (a bare TimeoutError)."""
    return str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def connection(pool: Any, failed: str) -> AsyncIterator[Any]:
    """A connection from ``pool``; any driver error while getting it, using it
    or giving it back raises ``Unavailable(f"{failed}: why")``.

    A connection that fails on its way back was broken: the pool closes it
    and opens a new one on a later acquire, so the store recovers by itself
    when the server returns.
    """
    try:
        conn = await pool.acquire()
    except DRIVER_ERRORS as exc:
        raise Unavailable(f"{failed}: {reason(exc)}") from None
    try:
        yield conn
    except DRIVER_ERRORS as exc:
        raise Unavailable(f"{failed}: {reason(exc)}") from None
    finally:
        with contextlib.suppress(*DRIVER_ERRORS):
            await pool.release(conn)


async def transaction(
    conn: Any,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    isolation: str = "read_committed",
    readonly: bool = False,
) -> T:
    """``fn(conn, *args)`` in one transaction; its result only once COMMIT is answered.

    When ``fn`` fails, the ROLLBACK is attempted but its own failure (a dead
    connection) is dropped: the error that stopped ``fn`` is the one raised.
    """
    tx = conn.transaction(isolation=isolation, readonly=readonly)
    await tx.start()
    try:
        result = await fn(conn, *args)
    except BaseException:
        with contextlib.suppress(*DRIVER_ERRORS):
            await tx.rollback()
        raise
    try:
        await tx.commit()
    except CONNECTION_LOST as exc:
        if readonly:
            raise
        raise Unavailable(f"{OUTCOME_UNKNOWN}: {reason(exc)}") from None
    return result
