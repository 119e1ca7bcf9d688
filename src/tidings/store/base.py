"""The store interface: durable per-user streams.

Guarantees every backend gives (tests/store_contract.py and the inbox and
topic contracts beside it check them):

- ``append`` is atomic per request and durable when it returns: an ack sent
  after it survives a crash (with the default durability).
- Each recipient's ``seq`` is that stream's previous head + 1, assigned inside
  the committing transaction, so seqs are gapless when assigned and ordered as
  commits are, across concurrent writers and nodes. A seq is never reused.
- An idempotency key seen before (same sender, within the retention window)
  returns the first result and stores nothing; with a different fingerprint
  it fails with ``IdempotencyConflict``.
- ``read_stream`` reads one consistent snapshot: the items and the head match.
  Expired notifications are never returned, listed, counted nor replayed.
- Every inbox change (``mark``, ``delete``, ``expire``) updates the user's
  counters in the same transaction and returns the counts after it, so the
  counts pushed to clients are exact without a recount per event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tidings.core.errors import ConfigError
from tidings.core.histogram import Batches
from tidings.core.inbox import InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, InboxItem, PublishRequest, PublishResult, StreamPage
from tidings.core.revocation import Revocation

PAGE_LIMIT = 1000
"""The largest page a store returns from one read."""

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
"""How long an idempotency key is remembered."""


@dataclass(frozen=True, slots=True)
class Expired:
    """What one sweep removed from one user's inbox, and the counts after it."""

    user_id: str
    ids: tuple[str, ...]
    counts: Counts | None
    """None for a topic: each node reads its connected subscribers' counts
    (``counts_many``) when it tells them."""
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class SchemaVersions:
    """A database's schema version beside the one this code migrates to."""

    database: int
    """0: no schema yet."""
    code: int

    def describe(self) -> str:
        if self.database == self.code:
            return f"schema version {self.code}, up to date"
        if self.database < self.code:
            pending = self.code - self.database
            return f"schema version {self.database}, {pending} migration(s) to version {self.code}"
        return f"schema version {self.database}, newer than this tidings ({self.code})"


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer tidings: running older code on it
    could misread or damage what the newer schema means."""

    def __init__(self, database: int, code: int) -> None:
        super().__init__(
            f"the database has schema version {database}, newer than this tidings knows "
            f"({code}): run the tidings that migrated it (or newer), or restore a backup"
        )


class Store(Protocol):
    migrated: SchemaVersions | None
    """What ``open`` found and migrated to (None before it ran)."""
    batches: Batches
    """Latency and size of each group commit of ``append`` (for metrics)."""

    async def schema_versions(self) -> SchemaVersions:
        """The database's schema version, read without migrating or opening the store."""
        ...

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe if several nodes do it at once)."""

    async def close(self) -> None:
        """Finish pending writes, then release connections."""

    async def append(self, request: PublishRequest) -> PublishResult:
        """Store one notification for each recipient; returns once committed.

        Concurrent calls are grouped into one transaction (group commit).
        Raises ``IdempotencyConflict`` or ``Unavailable``.
        """
        ...

    async def read_stream(
        self, user_id: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        """Notifications of ``user_id`` with seq > ``after_seq``, oldest first."""
        ...

    async def heads(self, user_ids: Sequence[str]) -> dict[str, int]:
        """The head seq of each stream in one query (0 for a stream never written)."""
        ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the store answers."""

    async def prune(self, *, now_ms: int) -> int:
        """Forget idempotency keys older than the window; returns how many."""
        ...

    # -- inbox ---------------------------------------------------------------

    async def history(
        self, user_id: str, *, after_seq: int, before_seq: int | None, limit: int
    ) -> StreamPage:
        """The personal stream between two seqs (exclusive), oldest first."""
        ...

    async def list_inbox(self, user_id: str, query: InboxQuery) -> tuple[list[InboxItem], bool]:
        """One page in id order, and whether more follow."""
        ...

    async def counts(self, user_id: str) -> Counts: ...

    async def counts_many(self, user_ids: Sequence[str]) -> dict[str, Counts]:
        """The counts of several users, read together (for events to all of them)."""
        ...

    async def count_filters(
        self, user_id: str, filters: Mapping[str, InboxFilter]
    ) -> dict[str, int]:
        """Exact counts for several filters, read from one snapshot."""
        ...

    async def mark(self, user_id: str, mark: Mark) -> tuple[list[str], Counts]:
        """Apply ``mark``; returns the ids whose state changed and the counts after."""
        ...

    async def delete(self, user_id: str, ids: Sequence[str]) -> tuple[list[str], Counts]: ...

    async def expire(self, *, now_ms: int, limit: int = 5000) -> list[Expired]:
        """Delete up to ``limit`` expired notifications; what went, by user."""
        ...

    async def trim(
        self, user_ids: Sequence[str], *, keep: int, now_ms: int, limit: int = 5000
    ) -> list[Expired]:
        """Cap each user's stream: remove what lies more than ``keep`` below its
        head (at most ``limit`` rows per user, oldest first), as retention does:
        counts move and a replay from below is reported incomplete."""
        ...

    # -- topics --------------------------------------------------------------

    async def read_topic(
        self, topic: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        """A topic's stream after ``after_seq``, oldest first (expired left out)."""
        ...

    async def subscribe(self, user_ids: Sequence[str], topic: str) -> dict[str, int]:
        """Subscribe from the topic's current head; returns each user's start seq.
        Idempotent: a user already in keeps the start it had."""
        ...

    async def unsubscribe(self, user_id: str, topic: str) -> bool: ...

    async def subscriptions(self, user_id: str) -> dict[str, int]:
        """Each topic the user is in, with the seq the subscription starts after;
        ``everyone`` is always there."""
        ...

    async def erase(self, user_id: str) -> int:
        """Delete everything stored for the user (the stream's head is kept, so a
        seq is never reused); returns how many notifications went."""
        ...

    async def revoke(self, revocation: Revocation) -> None:
        """Keep a revocation for good (a user's later one moves its moment on)."""

    async def revocations(self) -> list[Revocation]:
        """Every revocation kept, for a node that starts (or lost its broker link)."""
        ...

    async def export(self, user_id: str) -> dict[str, Any]:
        """Everything stored for the user, as JSON-ready data."""
        ...
