"""The store interface: durable per-user streams.

Guarantees every backend gives (tests/store_contract.py checks them):

- ``append`` is atomic per request and durable when it returns: an ack sent
  after it survives a crash (with the default durability).
- Each recipient's ``seq`` is that stream's previous head + 1, assigned inside
  the committing transaction, so seqs are gapless when assigned and ordered as
  commits are, across concurrent writers and nodes. A seq is never reused.
- An idempotency key seen before (same sender, within the retention window)
  returns the first result and stores nothing; with a different fingerprint
  it fails with ``IdempotencyConflict``.
- ``read_stream`` reads one consistent snapshot: the items and the head match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tidings.core.models import PublishRequest, PublishResult, StreamPage

PAGE_LIMIT = 1000
"""The largest page a store returns from one read."""

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
"""How long an idempotency key is remembered."""


class Store(Protocol):
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
