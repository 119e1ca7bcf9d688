"""Inbox listing latency on a 100k-notification inbox, SQLite and PostgreSQL.

Calls the store directly (no HTTP), so the figures are the store's own. One
user, ``bob``, gets ``--count`` notifications; each is also sent to one of
1,000 other users, so the tables hold twice that and the indexes must pick
bob's rows out. 10% carry the tag ``billing``, 1% ``security``; 1% expired
already (invisible, not swept); then the older half is marked read with one
``upTo`` mark and 5% archived. Measured, ``--repeat`` times each:

- ``first_page``: the newest 50;
- ``deep_page``: 50 after a cursor 90% of the way down;
- ``filtered_page``: the newest 50 unread ``billing`` items;
- ``rare_tag_page``: the newest 50 ``security`` items;
- ``counts``: the whole-inbox badge (counters less expired-unswept);
- ``tab_counts``: four tabs counted in one call.

Then the same inbox as topic items: ``--count`` broadcasts to ``everyone``
(one row each), read by ``tina`` (older half marked read with one ``upTo``
mark, 5% archived one by one) and ``zed`` (no state at all), measured as
``topic_*``: counts (kept per subscription, not counted), the first page,
the first unread page, and a mark read + unread of one item (the write and
the counts it returns).

On PostgreSQL ``rare_tag_page`` is measured again with a GIN index on tags,
to see whether one would pay. Prints the figures (median and p95, in ms) and
writes them to bench/results/inbox_listing.json.

    python -m bench.inbox_listing [--count 100000] [--repeat 50] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tidings.core.ids import new_id
from tidings.core.inbox import EVERYONE, InboxFilter, InboxQuery, Mark
from tidings.core.models import PublishRequest
from tidings.store.base import Store
from tidings.store.postgres.store import PostgresStore
from tidings.store.sqlite.store import SQLiteStore

RESULTS = Path(__file__).parent / "results" / "inbox_listing.json"
SCHEMA = "tidings_bench_inbox"
TABS = {
    "all": InboxFilter(),
    "unread": InboxFilter(read=False),
    "billing": InboxFilter(tags=("billing",)),
    "archived": InboxFilter(archived="only"),
}


def _request(n: int, now: int) -> PublishRequest:
    tags = ("security",) if n % 100 == 7 else ("billing",) if n % 10 == 3 else ()
    return PublishRequest(
        id=new_id(),
        recipients=("bob", f"u{n % 1000}"),
        message=f"notification {n}",
        created_at=now - 1_000_000 + n,
        sender="bench",
        data={"n": n},
        tags=tags,
        expires_at=now - 1 if n % 100 == 42 else None,
    )


async def fill(store: Store, count: int) -> tuple[list[str], dict[str, float]]:
    """Store ``count`` notifications for bob, then mark and archive; returns
    bob's ids, oldest first, and how long each step took."""
    now = time.time_ns() // 1_000_000
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, 2000):
        batch = [_request(n, now) for n in range(start, min(count, start + 2000))]
        await asyncio.gather(*(store.append(r) for r in batch))
        ids += [r.id for r in batch]
    stored = time.perf_counter() - started
    started = time.perf_counter()
    await store.mark("bob", Mark("read", up_to=ids[count // 2]))
    marked = time.perf_counter() - started
    for start in range(0, count, 1000):
        await store.mark("bob", Mark("archive", ids=tuple(ids[start : start + 1000 : 20])))
    return ids, {"fill_s": round(stored, 1), "mark_up_to_half_ms": round(marked * 1000, 1)}


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    await call()  # warm caches and prepared statements
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
    }


async def measure(store: Store, ids: list[str], repeat: int) -> dict[str, Any]:
    deep = sorted(ids, reverse=True)[len(ids) * 9 // 10]
    queries = {
        "first_page": InboxQuery(InboxFilter(), limit=50),
        "deep_page": InboxQuery(InboxFilter(), after=deep, limit=50),
        "filtered_page": InboxQuery(InboxFilter(read=False, tags=("billing",)), limit=50),
        "rare_tag_page": InboxQuery(InboxFilter(tags=("security",)), limit=50),
    }
    figures: dict[str, Any] = {}
    for name, query in queries.items():
        items, _ = await store.list_inbox("bob", query)
        assert len(items) == 50, (name, len(items))
        figures[name] = await timed(lambda q=query: store.list_inbox("bob", q), repeat)
    figures["counts"] = await timed(lambda: store.counts("bob"), repeat)
    figures["tab_counts"] = await timed(lambda: store.count_filters("bob", TABS), repeat)
    figures["counts_seen"] = (await store.counts("bob")).to_json()
    return figures


async def topic_figures(
    store: Store,
    count: int,
    repeat: int,
    analyze: Callable[[], Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """Fill ``everyone`` with ``count`` broadcasts and time tina's and zed's
    reads (``analyze`` refreshes the planner's statistics once filled)."""
    now = time.time_ns() // 1_000_000
    ids: list[str] = []
    for start in range(0, count, 2000):
        batch = [
            PublishRequest(
                id=new_id(),
                recipients=(),
                message=f"broadcast {n}",
                created_at=now - 1_000_000 + n,
                sender="bench",
                topic=EVERYONE,
            )
            for n in range(start, min(count, start + 2000))
        ]
        await asyncio.gather(*(store.append(r) for r in batch))
        ids += [r.id for r in batch]
    started = time.perf_counter()
    await store.mark("tina", Mark("read", up_to=ids[count // 2]))
    marked = (time.perf_counter() - started) * 1000
    for start in range(0, count, 1000):
        await store.mark("tina", Mark("archive", ids=tuple(ids[start : start + 1000 : 20])))
    if analyze is not None:
        await analyze()
    one = ids[-7]

    async def toggle() -> None:
        await store.mark("tina", Mark("read", ids=(one,)))
        await store.mark("tina", Mark("unread", ids=(one,)))

    unread = InboxQuery(InboxFilter(read=False), limit=50)
    return {
        "topic_mark_up_to_half_ms": round(marked, 1),
        "topic_counts": await timed(lambda: store.counts("tina"), repeat),
        "topic_counts_no_state": await timed(lambda: store.counts("zed"), repeat),
        "topic_first_page": await timed(
            lambda: store.list_inbox("tina", InboxQuery(InboxFilter(), limit=50)), repeat
        ),
        "topic_unread_page": await timed(lambda: store.list_inbox("tina", unread), repeat),
        "topic_mark_one_read_and_unread": await timed(toggle, repeat),
        "topic_counts_seen": (await store.counts("tina")).to_json(),
    }


async def on_sqlite(count: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "tidings.db", durable=False)
        await store.open()
        try:
            ids, setup = await fill(store, count)
            figures = {**setup, **await measure(store, ids, repeat)}
            return {**figures, **await topic_figures(store, count, repeat)}
        finally:
            await store.close()


async def on_postgres(url: str, count: int, repeat: int) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    admin = await asyncpg.connect(url)
    await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    store = PostgresStore(url, schema=SCHEMA, durable=False)
    await store.open()
    try:
        ids, setup = await fill(store, count)
        await admin.execute(f"VACUUM ANALYZE {SCHEMA}.notifications")
        figures = {**setup, **await measure(store, ids, repeat)}
        await admin.execute(f"CREATE INDEX bench_tags ON {SCHEMA}.notifications USING gin (tags)")
        await admin.execute(f"ANALYZE {SCHEMA}.notifications")
        query = InboxQuery(InboxFilter(tags=("security",)), limit=50)
        figures["rare_tag_page_with_gin"] = await timed(
            lambda: store.list_inbox("bob", query), repeat
        )
        figures.update(
            await topic_figures(
                store,
                count,
                repeat,
                lambda: admin.execute(
                    f"ANALYZE {SCHEMA}.topic_notifications, {SCHEMA}.receipts,"
                    f" {SCHEMA}.subscriptions"
                ),
            )
        )
        return figures
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "notifications_for_bob": args.count,
        "rows_in_store": args.count * 2,
        "sqlite": await on_sqlite(args.count, args.repeat),
        "postgres": await on_postgres(args.postgres, args.count, args.repeat),
    }
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
