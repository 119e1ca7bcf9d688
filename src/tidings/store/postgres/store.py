"""The scale-out store: PostgreSQL through asyncpg, shared by every node.

URL: ``postgresql://user:password@host:5432/dbname[?schema=NAME&pool_size=N]``.
Other query parameters (``sslmode``, ...) go to asyncpg unchanged. ``schema``
keeps tidings' tables in their own PostgreSQL schema: it is created at
``open()`` and set as ``search_path`` on every pool connection, so several
deployments, or tests, can share one database without seeing each other
(lowercase letters, digits and ``_`` only). ``pool_size`` caps the connections
this node opens (default 10).

Writes use group commit: concurrent ``append`` calls share one transaction
and a handful of round trips, whatever the batch size (arrays via
``unnest``). Seqs are assigned inside that transaction by an upsert of the
``streams`` rows that returns the new heads; the row locks it takes are held
until commit, so another node appending to the same user waits and then
continues from the committed head: seqs stay gapless and in commit order
across nodes. A topic publish is stored once, in ``topic_notifications``;
its seq comes the same way from an upsert of the ``topics`` row. Every
transaction takes its locks in one global order, idempotency keys first,
then streams, then topics, each sorted by the database, so two nodes never
deadlock on each other.

An idempotency key is claimed by inserting its row before any seq is
assigned. A concurrent claim of the same key from another node waits on the
unique index and, once the first commits, finds the row and answers as a
duplicate; a duplicate is never stored twice.

A lost server is ``Unavailable`` whatever asyncpg raised, and a COMMIT left
unanswered is reported as an unknown outcome, never acked
(``postgres_faults``); the pool replaces broken connections, so the store
works again as soon as the server is back.

The inbox (listing, counts, marks, expiry, erasure) and the topic reads and
subscriptions are ``PostgresInbox``, in ``postgres.inbox`` (topic SQL in
``postgres_topics``), which this class inherits.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import orjson

from tidings.batching import GroupCommitter
from tidings.core.errors import BadRequest, ConfigError, Unavailable, Unreachable
from tidings.core.models import PublishRequest, PublishResult
from tidings.core.revocation import Revocation
from tidings.logs import redact_url
from tidings.store.base import IDEMPOTENCY_TTL_MS, SchemaVersions
from tidings.store.batch import committed, conflict, duplicate, first_answer, now_ms, repeat
from tidings.store.postgres import revocations, sql, topics
from tidings.store.postgres import schema as migrations
from tidings.store.postgres.faults import DRIVER_ERRORS, UNREACHABLE, reason
from tidings.store.postgres.inbox import PostgresInbox
from tidings.store.postgres.sql import storable

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A schema name that needs no quoting, so it can go into SQL and ``search_path`` as is."""

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a new connection before reporting the store unavailable."""

COMMAND_TIMEOUT = 30.0
"""Seconds one statement may take; a stuck server must not hold writers forever."""

PING_TIMEOUT = 2.0

_Key = tuple[str, str]
"""An idempotency key: (sender or "", key)."""


def _unstorable(request: PublishRequest) -> str | None:
    """Why PostgreSQL would refuse ``request``, so it can fail alone instead of
    aborting the whole batch it shares a transaction with."""
    fields = [
        ("id", request.id),
        ("message", request.message),
        ("sender", request.sender or ""),
        ("idempotencyKey", request.idempotency_key or ""),
        ("topic", request.topic or ""),
        *(("userId", user) for user in request.recipients),
        *(("tag", tag) for tag in request.tags),
    ]
    for name, text in fields:
        if "\x00" in text:
            return f"{name} contains a NUL character, which the store cannot keep"
        if not storable(text):
            return f"{name} contains unpaired surrogates, which the store cannot keep"
    return None


class PostgresStore(PostgresInbox):
    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        durable: bool = True,
    ) -> None:
        if schema is not None and not SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"bad PostgreSQL schema name {schema!r}: use lowercase letters, digits and _"
            )
        if pool_size < 2:
            raise ConfigError(f"PostgreSQL pool_size must be at least 2, not {pool_size!r}")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.durable = durable
        """False sets ``synchronous_commit = off``: a server crash may lose the
        last acknowledged commits, never corrupt or reorder them."""
        self._pool: Any = None
        self._committer: GroupCommitter[PublishRequest, PublishResult] = GroupCommitter(self._flush)
        self.batches = self._committer.batches
        self.migrated: SchemaVersions | None = None

    @classmethod
    def from_url(cls, url: str, *, durable: bool = True) -> PostgresStore:
        """Split tidings' own options (``schema``, ``pool_size``) off the URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"bad PostgreSQL URL {redact_url(url)!r}: use postgresql://...")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = dict(item for item in query if item[0] in ("schema", "pool_size"))
        rest = [item for item in query if item[0] not in ours]
        try:
            pool_size = int(ours.get("pool_size", "10"))
        except ValueError:
            raise ConfigError(
                f"bad pool_size {ours['pool_size']!r} in PostgreSQL URL: use a number"
            ) from None
        return cls(
            urlunsplit(parts._replace(query=urlencode(rest))),
            schema=ours.get("schema") or None,
            pool_size=pool_size,
            durable=durable,
        )

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        if not self.durable:
            settings["synchronous_commit"] = "off"
        pool: Any = None
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings=settings,
            )
            async with pool.acquire() as conn:
                self.migrated = await migrations.migrate(conn, schema=self.schema)
        except DRIVER_ERRORS as exc:
            if pool is not None:
                pool.terminate()
            error = Unreachable if isinstance(exc, UNREACHABLE) else Unavailable
            raise error(
                f"cannot open PostgreSQL store at {redact_url(self.dsn)!r}: {reason(exc)}"
            ) from None
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        self._pool = pool

    async def schema_versions(self) -> SchemaVersions:
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT, server_settings=settings
            )
            try:
                found = await migrations.version(conn)
            finally:
                await conn.close()
        except DRIVER_ERRORS as exc:
            raise Unavailable(
                f"cannot read PostgreSQL store at {redact_url(self.dsn)!r}: {reason(exc)}"
            ) from None
        return SchemaVersions(found, len(migrations.MIGRATIONS))

    async def close(self) -> None:
        await self._committer.wait_idle()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
            except TimeoutError:
                pool.terminate()

    # -- writes --------------------------------------------------------------

    async def append(self, request: PublishRequest) -> PublishResult:
        return await self._committer.submit(request)

    async def _flush(self, batch: list[PublishRequest]) -> list[PublishResult | Exception]:
        return await self._transaction(
            self._write_batch,
            batch,
            failed="store write failed, nothing stored; retry with the same idempotency key",
        )

    async def _write_batch(
        self, conn: Any, batch: list[PublishRequest]
    ) -> list[PublishResult | Exception]:
        """One transaction: claim keys, advance heads, insert rows, record answers."""
        results: list[PublishResult | Exception | None] = [None] * len(batch)
        datas: list[str | None] = [None] * len(batch)
        tags: list[str | None] = [None] * len(batch)
        for i, request in enumerate(batch):
            problem = _unstorable(request)
            if problem is None and request.data is not None:
                try:
                    datas[i] = orjson.dumps(request.data).decode()
                except orjson.JSONEncodeError as exc:
                    problem = f"data cannot be stored as JSON: {exc}"
            if problem is not None:
                results[i] = BadRequest(problem)
            elif request.tags:
                tags[i] = orjson.dumps(request.tags).decode()

        first: dict[_Key, int] = {}
        for i, request in enumerate(batch):
            if results[i] is None and request.idempotency_key is not None:
                first.setdefault((request.sender or "", request.idempotency_key), i)
        known = await self._claim(conn, {key: batch[i].fingerprint for key, i in first.items()})

        new: list[int] = []
        repeats: list[tuple[int, int]] = []
        counts: dict[str, int] = {}
        topic_counts: dict[str, int] = {}
        for i, request in enumerate(batch):
            if results[i] is not None:
                continue
            if request.idempotency_key is not None:
                key = (request.sender or "", request.idempotency_key)
                if key in known:
                    fingerprint, earlier = known[key]
                    results[i] = (
                        earlier if fingerprint == request.fingerprint else conflict(request)
                    )
                    continue
                if first[key] != i:
                    if batch[first[key]].fingerprint == request.fingerprint:
                        repeats.append((i, first[key]))
                    else:
                        results[i] = conflict(request)
                    continue
            new.append(i)
            for user in request.recipients:
                counts[user] = counts.get(user, 0) + 1
            if request.topic is not None:
                topic_counts[request.topic] = topic_counts.get(request.topic, 0) + 1

        # Streams before topics: the global lock order (see the module docstring).
        next_seq = await self._advance(conn, counts)
        next_topic_seq = await self._advance_topics(conn, topic_counts)
        rows: list[tuple[Any, ...]] = []
        topic_rows: list[tuple[Any, ...]] = []
        answers: list[tuple[str, str, bytes]] = []
        for i in new:
            request = batch[i]
            seqs = []
            for user in request.recipients:
                seq = next_seq[user]
                next_seq[user] = seq + 1
                seqs.append((user, seq))
                rows.append(
                    (user, seq, request.id, request.sender, request.message, datas[i],
                     request.created_at, tags[i], request.expires_at)
                )  # fmt: skip
            stored = tuple(request.notification_for(u, s) for u, s in seqs)
            topic_seq = 0
            if request.topic is not None:
                topic_seq = next_topic_seq[request.topic]
                next_topic_seq[request.topic] = topic_seq + 1
                topic_rows.append(
                    (request.topic, topic_seq, request.id, request.sender, request.message,
                     datas[i], tags[i], request.created_at, request.expires_at)
                )  # fmt: skip
                stored = (*stored, request.topic_notification(topic_seq))
            result = committed(request, seqs, stored, topic_seq)
            results[i] = result
            if request.idempotency_key is not None:
                answers.append(
                    (request.sender or "", request.idempotency_key, first_answer(result))
                )
        for i, j in repeats:
            done = results[j]
            assert isinstance(done, PublishResult)
            results[i] = repeat(done)

        if rows:
            await conn.execute(
                sql.INSERT_NOTIFICATIONS, *(list(column) for column in zip(*rows, strict=True))
            )
        if topic_rows:
            await conn.execute(
                topics.INSERT_NOTIFICATIONS,
                *(list(column) for column in zip(*topic_rows, strict=True)),
            )
        if answers:
            await conn.execute(
                sql.SAVE_ANSWERS, *(list(column) for column in zip(*answers, strict=True))
            )
        return [
            result if result is not None else Unavailable("request left unanswered; retry")
            for result in results
        ]

    async def _claim(
        self, conn: Any, fingerprints: dict[_Key, str]
    ) -> dict[_Key, tuple[str, PublishResult]]:
        """Claim each key for this transaction; returns the keys another request
        already holds, with that request's fingerprint and answer.

        A key whose row is older than the window is taken over. The answer is
        filled in by ``_write_batch`` before commit.
        """
        if not fingerprints:
            return {}
        now = now_ms()
        senders = [sender for sender, _ in fingerprints]
        keys = [key for _, key in fingerprints]
        claimed = await conn.fetch(
            sql.CLAIM_KEYS,
            senders,
            keys,
            list(fingerprints.values()),
            now,
            now - IDEMPOTENCY_TTL_MS,
        )
        held = set(fingerprints) - {(row["sender"], row["key"]) for row in claimed}
        if not held:
            return {}
        rows = await conn.fetch(
            sql.READ_KEYS,
            [sender for sender, _ in held],
            [key for _, key in held],
        )
        known: dict[_Key, tuple[str, PublishResult]] = {}
        for row in rows:
            known[(row["sender"], row["key"])] = (row["fingerprint"], duplicate(row["response"]))
        if len(known) != len(held):
            raise Unavailable("an idempotency key vanished while being read; retry")
        return known

    async def _advance(self, conn: Any, counts: dict[str, int]) -> dict[str, int]:
        """Move each stream's head forward by its count; returns each stream's first
        new seq. The row locks taken here serialize writers of the same stream."""
        if not counts:
            return {}
        rows = await conn.fetch(sql.ADVANCE_HEADS, list(counts), list(counts.values()))
        return {row["user_id"]: row["head"] - counts[row["user_id"]] + 1 for row in rows}

    async def _advance_topics(self, conn: Any, counts: dict[str, int]) -> dict[str, int]:
        """As ``_advance``, for the topics published to: each topic's first new seq."""
        if not counts:
            return {}
        rows = await conn.fetch(topics.ADVANCE_TOPICS, list(counts), list(counts.values()))
        return {row["topic"]: row["head"] - counts[row["topic"]] + 1 for row in rows}

    async def revoke(self, revocation: Revocation) -> None:
        async with self._connection("store write failed, nothing revoked") as conn:
            await revocations.keep(conn, revocation)

    async def revocations(self) -> list[Revocation]:
        return revocations.rows_to_revocations(await self._fetch(revocations.LOAD))

    async def prune(self, *, now_ms: int) -> int:
        async with self._connection("store prune failed") as conn:
            status: str = await conn.execute(sql.PRUNE_KEYS, now_ms - IDEMPOTENCY_TTL_MS)
        return int(status.rsplit(" ", 1)[-1])

    # -- reads ---------------------------------------------------------------

    async def heads(self, user_ids: Sequence[str]) -> dict[str, int]:
        wanted = [user for user in dict.fromkeys(user_ids) if storable(user)]
        rows = await self._fetch(sql.HEADS, wanted)
        found = {row["user_id"]: row["head"] for row in rows}
        return {user: found.get(user, 0) for user in user_ids}

    async def ping(self) -> None:
        async def probe() -> None:
            async with self._connection("store unreachable") as conn:
                await conn.fetchval("SELECT 1")

        try:
            await asyncio.wait_for(probe(), PING_TIMEOUT)
        except TimeoutError:
            raise Unavailable(f"store unreachable: no answer in {PING_TIMEOUT:g} s") from None
