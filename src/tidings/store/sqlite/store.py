"""The embedded default store: one SQLite file in WAL mode.

One writer thread owns the write connection and commits whole batches from
the group committer, so seq assignment needs no locking beyond SQLite's own.
Reads run on a small pool of reader connections; WAL lets them read a
consistent snapshot while the writer commits. ``durable=True`` (the default)
sets ``synchronous=FULL``: each commit is fsynced before any ack. The relaxed
mode (``synchronous=NORMAL``) survives a process crash but may lose the last
commits on power loss.

A write that fails (a full disk above all) keeps its own error, names the
database file, and marks the store's ``WriteHealth``: ``ping`` then probes
with a real write, so readiness stays 503 while writes cannot succeed and
turns 200 once one does. Reads go on meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tidings.batching import GroupCommitter
from tidings.core.errors import ConfigError, Unavailable
from tidings.core.inbox import InboxFilter, InboxQuery, Mark
from tidings.core.models import (
    Counts,
    InboxItem,
    PublishRequest,
    PublishResult,
    StreamPage,
)
from tidings.core.revocation import Revocation
from tidings.store.base import IDEMPOTENCY_TTL_MS, PAGE_LIMIT, Expired, SchemaVersions
from tidings.store.batch import now_ms
from tidings.store.health import WriteHealth
from tidings.store.sqlite import append, inbox, revocations, topics
from tidings.store.sqlite.schema import MIGRATIONS, migrate
from tidings.store.sqlite.schema import version as schema_version
from tidings.store.sqlite.tx import write_transaction

T = TypeVar("T")
"""Host parameters per IN (...) query, under SQLite's historic limit of 999."""

MIN_FREE_BYTES = 1 << 20
"""Free space the disk needs before a store whose writes failed tries one
again for readiness; below it the disk counts as still full."""


def _touch(conn: sqlite3.Connection) -> None:
    """The smallest real write: one row rewritten as it is, so one page to store."""
    conn.execute("UPDATE schema_version SET version = version")


class SQLiteStore:
    def __init__(self, path: Path, *, durable: bool = True, readers: int = 2) -> None:
        self.path = path
        self.durable = durable
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tidings-sqlite-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self.health = WriteHealth(str(path))
        self._committer: GroupCommitter[PublishRequest, PublishResult] = GroupCommitter(self._flush)
        self.batches = self._committer.batches
        self.migrated: SchemaVersions | None = None

    @classmethod
    def from_url(cls, url: str, *, durable: bool = True) -> SQLiteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///path/to/file.db")
        return cls(Path(url[len("sqlite:///") :]), durable=durable)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        await self._in_writer(self._open_writer)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        return conn

    def _open_writer(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            self.migrated = migrate(conn)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"cannot open SQLite store at {str(self.path)!r}: {exc}") from None
        self._write_conn = conn

    async def schema_versions(self) -> SchemaVersions:
        return await asyncio.to_thread(self._schema_versions)

    def _schema_versions(self) -> SchemaVersions:
        found = 0
        if self.path.exists():
            try:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
                try:
                    found = schema_version(conn)
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise Unavailable(
                    f"cannot read SQLite store at {str(self.path)!r}: {exc}"
                ) from None
        return SchemaVersions(found, len(MIGRATIONS))

    async def close(self) -> None:
        await self._committer.wait_idle()
        for conn in self._read_conns:
            conn.close()
        if self._write_conn is not None:
            await self._in_writer(self._write_conn.close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    async def _in_writer(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _in_reader(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            self._read_conns.append(conn)
        return conn

    # -- writes --------------------------------------------------------------

    async def append(self, request: PublishRequest) -> PublishResult:
        return await self._committer.submit(request)

    async def _flush(self, batch: list[PublishRequest]) -> list[PublishResult | Exception]:
        result: list[PublishResult | Exception] = await self._in_writer(self._write_batch, batch)
        return result

    def _write_batch(self, batch: list[PublishRequest]) -> list[PublishResult | Exception]:
        return self._write(append.assign, batch, undone="nothing stored")

    async def prune(self, *, now_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (now_ms - IDEMPOTENCY_TTL_MS,)
            )
            return cursor.rowcount

        pruned: int = await self._in_writer(self._write, run)
        return pruned

    # -- reads ---------------------------------------------------------------

    async def read_stream(
        self, user_id: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        page: StreamPage = await self._in_reader(
            self._read_stream, user_id, after_seq, min(limit, PAGE_LIMIT)
        )
        return page

    def _read_stream(self, user_id: str, after_seq: int, limit: int) -> StreamPage:
        return self._read(inbox.history, user_id, after_seq, None, limit, now_ms())

    async def history(
        self, user_id: str, *, after_seq: int, before_seq: int | None, limit: int
    ) -> StreamPage:
        page: StreamPage = await self._in_reader(
            self._read,
            inbox.history,
            user_id,
            after_seq,
            before_seq,
            min(limit, PAGE_LIMIT),
            now_ms(),
        )
        return page

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read transaction (one snapshot)."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise Unavailable(f"store read failed: {exc}") from None

    def _write(self, fn: Callable[..., T], *args: Any, undone: str = "nothing changed") -> T:
        """Run ``fn(conn, *args)`` in one write transaction on the writer thread;
        a failure is ``Unavailable`` saying what was ``undone`` and why."""
        conn = self._write_conn
        if conn is None:
            raise Unavailable("store is not open")
        changes = conn.total_changes
        try:
            result = write_transaction(conn, fn, *args)
        except sqlite3.Error as exc:
            reason = self._write_error(exc)
            self.health.failed(reason)
            raise Unavailable(f"store write failed, {undone}: {reason}") from None
        if conn.total_changes != changes:  # a transaction that wrote nothing proves nothing
            self.health.succeeded()
        return result

    def _write_error(self, exc: sqlite3.Error) -> str:
        """SQLite's words and error name; a full disk is called so, with the file."""
        name = getattr(exc, "sqlite_errorname", None)
        detail = f"{exc} ({name})" if name else str(exc)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # primary of an extended code
        if code == sqlite3.SQLITE_FULL:
            return f"disk full at {str(self.path)!r}: {detail}"
        return detail

    def _probe_write(self) -> None:
        """While writes fail: one small real write, on a disk with room for it."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            raise Unavailable(f"store cannot write: {exc}") from None
        if free < MIN_FREE_BYTES:
            raise Unavailable(f"store cannot write: {self.health.failure}; {free} bytes free")
        self._write(_touch)

    # -- inbox ---------------------------------------------------------------

    async def list_inbox(self, user_id: str, query: InboxQuery) -> tuple[list[InboxItem], bool]:
        result: tuple[list[InboxItem], bool] = await self._in_reader(
            self._read, inbox.list_items, user_id, query, now_ms()
        )
        return result

    async def counts(self, user_id: str) -> Counts:
        counts: Counts = await self._in_reader(self._read, inbox.counts, user_id, now_ms())
        return counts

    async def counts_many(self, user_ids: Sequence[str]) -> dict[str, Counts]:
        def run(conn: sqlite3.Connection, now: int) -> dict[str, Counts]:
            return {user: inbox.counts(conn, user, now) for user in user_ids}

        result: dict[str, Counts] = await self._in_reader(self._read, run, now_ms())
        return result

    async def count_filters(
        self, user_id: str, filters: Mapping[str, InboxFilter]
    ) -> dict[str, int]:
        def run(conn: sqlite3.Connection, now: int) -> dict[str, int]:
            return {name: inbox.count(conn, user_id, f, now) for name, f in filters.items()}

        result: dict[str, int] = await self._in_reader(self._read, run, now_ms())
        return result

    async def mark(self, user_id: str, mark: Mark) -> tuple[list[str], Counts]:
        result: tuple[list[str], Counts] = await self._in_writer(
            self._write, inbox.mark, user_id, mark, now_ms()
        )
        return result

    async def delete(self, user_id: str, ids: Sequence[str]) -> tuple[list[str], Counts]:
        result: tuple[list[str], Counts] = await self._in_writer(
            self._write, inbox.delete, user_id, list(ids), now_ms()
        )
        return result

    async def expire(self, *, now_ms: int, limit: int = 5000) -> list[Expired]:
        result: list[Expired] = await self._in_writer(self._write, inbox.expire, now_ms, limit)
        return result

    async def trim(
        self, user_ids: Sequence[str], *, keep: int, now_ms: int, limit: int = 5000
    ) -> list[Expired]:
        if not user_ids:
            return []
        result: list[Expired] = await self._in_writer(
            self._write, inbox.trim, list(user_ids), keep, limit, now_ms
        )
        return result

    async def read_topic(
        self, topic: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        page: StreamPage = await self._in_reader(
            self._read, topics.read_topic, topic, after_seq, min(limit, PAGE_LIMIT), now_ms()
        )
        return page

    async def subscribe(self, user_ids: Sequence[str], topic: str) -> dict[str, int]:
        starts: dict[str, int] = await self._in_writer(
            self._write, topics.subscribe, list(user_ids), topic, now_ms()
        )
        return starts

    async def unsubscribe(self, user_id: str, topic: str) -> bool:
        gone: bool = await self._in_writer(self._write, topics.unsubscribe, user_id, topic)
        return gone

    async def subscriptions(self, user_id: str) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            return {row[0]: row[1] for row in topics.subscriptions(conn, user_id)}

        subs: dict[str, int] = await self._in_reader(self._read, run)
        return subs

    async def erase(self, user_id: str) -> int:
        erased: int = await self._in_writer(self._write, inbox.erase, user_id)
        return erased

    async def revoke(self, revocation: Revocation) -> None:
        await self._in_writer(self._write, revocations.keep, revocation)

    async def revocations(self) -> list[Revocation]:
        kept: list[Revocation] = await self._in_reader(self._read, revocations.load)
        return kept

    async def export(self, user_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._in_reader(self._read, inbox.export, user_id, now_ms())
        return data

    async def heads(self, user_ids: Sequence[str]) -> dict[str, int]:
        def run() -> dict[str, int]:
            found = append.read_heads(self._reader(), list(user_ids))
            return {user: found.get(user, 0) for user in user_ids}

        heads: dict[str, int] = await self._in_reader(run)
        return heads

    async def ping(self) -> None:
        """Reads answer, and writes do: after a failed write, only a probe write
        that succeeds makes the store ready again."""

        def run() -> None:
            try:
                self._reader().execute("SELECT 1 FROM streams LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"store unreachable: {exc}") from None

        await self._in_reader(run)
        if self.health.failure is not None:
            await self._in_writer(self._probe_write)
