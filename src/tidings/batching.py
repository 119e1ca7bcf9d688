"""Group commit: concurrent writers share one transaction.

Callers ``submit`` items and await their own result. One drain task hands
everything queued to ``flush`` as a single batch; while that batch commits
(and fsyncs), new items queue up for the next one. There is no timer: a lone
writer commits at once, and under load the batches grow by themselves, so one
fsync covers many acks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tidings.core.histogram import Batches

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommitter(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, max_batch: int = 4096) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = Batches()
        """Latency and size of every batch flushed (for metrics): one pair of
        observations per batch, not per item."""

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its own result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def wait_idle(self) -> None:
        """Return once everything submitted so far has been flushed."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                started = time.perf_counter()
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                finally:
                    self.batches.latency.observe(time.perf_counter() - started)
                    self.batches.sizes.observe(len(batch))
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._drainer = None
