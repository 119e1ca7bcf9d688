"""The inbox half of the PostgreSQL store: reading, listing, counting and
changing the notifications ``append`` stored.

Each user's ``streams`` row keeps exact counters (total, unread, unseen). A
change moves them in the transaction that changes the rows, by what its
``UPDATE``/``DELETE ... RETURNING`` reports, and only after taking the row
lock of that user's stream (``LOCK_STREAMS``; ``append`` takes the same lock
when it advances the head). So changes to one user's inbox are serialized
across nodes: two nodes marking the same items count each real change once,
and the counts a change returns are the counts right after it. Items that
expired but were not swept yet are subtracted whenever counts are read.

Topic items (``postgres_topics``) are merged into every listing and count.
Their part of the counts is kept too, without a write per subscriber on a
broadcast: each topic counts its alive items, each subscription keeps offsets
from that (``tidings.core.counters``). Changes to a user's topic state take
the same stream lock (the stream row is created, with head 0, for a user who
has only topic items), then a shared lock on the user's topics rows that only
a sweep of those topics waits for, so a sweep reads every subscriber's state
of what it removes as it stays until commit.

Reads are single statements, so each sees one snapshot; ``export`` reads in
one repeatable-read transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tidings.core.counters import (
    Moves,
    Receipt,
    State,
    Subscription,
    marked,
    removed,
    swept_offsets,
)
from tidings.core.inbox import EVERYONE, InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, InboxItem, StreamPage, iso_ms
from tidings.store.base import PAGE_LIMIT, Expired
from tidings.store.batch import now_ms
from tidings.store.postgres import sql, topics
from tidings.store.postgres.pool import Pooled
from tidings.store.postgres.rows import (
    StreamMoves,
    by_seq,
    counts_of,
    marked_moves,
    removed_moves,
    state,
    to_item,
    to_notification,
)
from tidings.store.postgres.sql import storable


class PostgresInbox(Pooled):
    """Inherited by ``PostgresStore``, which opens ``_pool``."""

    # -- reads ---------------------------------------------------------------

    async def read_stream(
        self, user_id: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        return await self.history(user_id, after_seq=after_seq, before_seq=None, limit=limit)

    async def history(
        self, user_id: str, *, after_seq: int, before_seq: int | None, limit: int
    ) -> StreamPage:
        if not storable(user_id):
            return StreamPage(items=[], head=0, trimmed=0)
        before = before_seq if before_seq is not None else 2**62
        rows = await self._fetch(
            sql.HISTORY, user_id, after_seq, before, now_ms(), min(limit, PAGE_LIMIT)
        )
        if not rows:
            return StreamPage(items=[], head=0, trimmed=0)
        items = [to_item(user_id, row).notification for row in rows if row["seq"] is not None]
        return StreamPage(items=items, head=rows[0]["head"], trimmed=rows[0]["trimmed"])

    async def list_inbox(self, user_id: str, query: InboxQuery) -> tuple[list[InboxItem], bool]:
        if not storable(user_id):
            return [], False
        statement, args = sql.list_query(user_id, query, now_ms())
        rows = await self._fetch(statement, *args)
        page = [to_item(user_id, row, row["topic"]) for row in rows[: query.limit]]
        return page, len(rows) > query.limit

    async def counts(self, user_id: str) -> Counts:
        if not storable(user_id):
            return Counts()
        rows = await self._fetch(sql.COUNTS, [user_id], now_ms())
        return counts_of(rows[0]) if rows else Counts()

    async def counts_many(self, user_ids: Sequence[str]) -> dict[str, Counts]:
        users = [user for user in dict.fromkeys(user_ids) if storable(user)]
        rows = await self._fetch(sql.COUNTS, users, now_ms()) if users else []
        return {row["user_id"]: counts_of(row) for row in rows}

    async def count_filters(
        self, user_id: str, filters: Mapping[str, InboxFilter]
    ) -> dict[str, int]:
        if not filters or not storable(user_id):
            return dict.fromkeys(filters, 0)
        kept = {name: f.kept_count() for name, f in filters.items()}
        found: dict[str, int] = {}
        if any(kept.values()):  # read from the counters, not counted
            counts = (await self.counts(user_id)).to_json()
            found = {name: int(counts[k]) for name, k in kept.items() if k is not None}
        rest = [name for name in filters if name not in found]
        if rest:
            statement, args = sql.count_query(user_id, [filters[n] for n in rest], now_ms())
            rows = await self._fetch(statement, *args)
            found.update({name: int(n) for name, n in zip(rest, rows[0], strict=True)})
        return {name: found[name] for name in filters}

    async def export(self, user_id: str) -> dict[str, Any]:
        now = now_ms()

        async def run(conn: Any) -> tuple[list[Any], int, Counts, dict[str, Any]]:
            rows = await conn.fetch(sql.EXPORT_ITEMS, user_id)
            head = await conn.fetchval(sql.HEAD, user_id)
            counts = await conn.fetch(sql.COUNTS, [user_id], now)
            subscriptions = await conn.fetch(topics.EXPORT_SUBSCRIPTIONS, user_id)
            receipts = await conn.fetch(topics.EXPORT_RECEIPTS, user_id)
            return rows, head or 0, counts_of(counts[0]), topics.export(subscriptions, receipts)

        rows, head, counts, topic_state = (
            await self._transaction(run, readonly=True)
            if storable(user_id)
            else ([], 0, Counts(), topics.export([], []))
        )
        return {
            "userId": user_id,
            "exportedAt": iso_ms(now),
            "head": head,
            "counts": counts.to_json(),
            "notifications": [to_item(user_id, row).to_json() for row in rows],
            **topic_state,
        }

    # -- changes -------------------------------------------------------------

    async def mark(self, user_id: str, mark: Mark) -> tuple[list[str], Counts]:
        if not storable(user_id):
            return [], Counts()
        return await self._transaction(self._mark, user_id, mark, now_ms())

    async def _mark(
        self, conn: Any, user_id: str, mark: Mark, now: int
    ) -> tuple[list[str], Counts]:
        await self._lock_user(conn, user_id)
        target = list(mark.ids) if mark.ids is not None else mark.up_to
        stamp = now if mark.action in sql.MARK_STAMPS else None
        statement = sql.MARKS[mark.action, mark.ids is not None]
        rows = await conn.fetch(statement, user_id, target, stamp, now)
        if mark.up_to is not None and mark.action in topics.PENDING:
            shared = await self._move_markers(conn, user_id, mark.action, mark.up_to, now)
        else:
            by = "ids" if mark.ids is not None else "up_to"
            picked = await conn.fetch(topics.MARKS[mark.action, by], user_id, target, now)
            await self._offset(conn, user_id, mark.action, picked, now)
            shared = [row["id"] for row in picked]
        counts = await self._settle(conn, {user_id: marked_moves(mark.action, rows)}, now)
        return [row["id"] for row in rows] + shared, counts.get(user_id, Counts())

    async def _move_markers(
        self, conn: Any, user_id: str, action: str, up_to: str, now: int
    ) -> list[str]:
        """Mark read (or seen) every topic item up to ``up_to`` as SQLite's
        ``sqlite.receipts._move_marker`` does: markers moved to just below the
        first larger id, only the items between old and new marker read, the
        few above it with an id up to ``up_to`` given receipts."""
        changed: list[str] = []
        for sub in await conn.fetch(topics.subs("$1"), user_id):
            topic, old = sub["topic"], sub[f"{action}_upto"]
            bounds = await conn.fetchrow(topics.MARKER_BOUNDS, topic, up_to)
            top = bounds["top"] or 0
            marker = min(bounds["newer"] - 1, top) if bounds["newer"] is not None else top
            rows = list(
                await conn.fetch(
                    topics.PENDING[action], user_id, topic, max(old, sub["from_seq"]), marker
                )
            )
            if action == "read":
                rows += await conn.fetch(topics.PENDING_UNREAD, user_id, topic, min(old, marker))
                await conn.execute(topics.CLEAR_UNREAD, user_id, topic, marker)
            if marker > old:
                await conn.execute(topics.SET_MARKER[action], user_id, topic, marker, now)
            # Expired items not swept yet are read too (the sweep gives them
            # back), but only alive ones are reported as changed.
            await self._offset(conn, user_id, action, rows, now)
            changed += [
                row["id"] for row in rows if row["expires_at"] is None or row["expires_at"] > now
            ]
            above = await conn.fetch(
                topics.MARKS[action, "above"], user_id, up_to, now, topic, marker
            )
            await self._offset(conn, user_id, action, above, now)
            changed += [row["id"] for row in above]
        return changed

    async def _offset(
        self, conn: Any, user_id: str, action: str, rows: Sequence[Any], now: int
    ) -> None:
        """Move the user's topic offsets by what ``action`` did to ``rows``."""
        states: dict[str, list[State]] = {}
        for row in rows:
            states.setdefault(row["topic"], []).append(state(row))
        moves = {
            topic: removed(items) if action == "delete" else marked(action, items)
            for topic, items in states.items()
        }
        moves = {topic: move for topic, move in moves.items() if any(move)}
        if moves:
            columns = [list(column) for column in zip(*moves.values(), strict=True)]
            await conn.execute(topics.OFFSETS, user_id, list(moves), *columns, now)

    async def _lock_user(self, conn: Any, user_id: str) -> None:
        """Take the user's stream lock, creating the stream if the user has none
        yet (an inbox of topic items only): every change of the user's state,
        personal or topic, is serialized by it. Then a shared lock on the
        user's topics, which only a sweep of them waits for."""
        await conn.execute(sql.ENSURE_STREAM, user_id)
        await conn.execute(sql.LOCK_STREAMS, [user_id])
        await conn.execute(topics.LOCK_TOPICS, user_id)

    async def delete(self, user_id: str, ids: Sequence[str]) -> tuple[list[str], Counts]:
        if not storable(user_id):
            return [], Counts()
        return await self._transaction(self._delete, user_id, list(ids), now_ms())

    async def _delete(
        self, conn: Any, user_id: str, ids: list[str], now: int
    ) -> tuple[list[str], Counts]:
        await self._lock_user(conn, user_id)
        rows = await conn.fetch(sql.DELETE_ITEMS, user_id, ids, now)
        hidden = await conn.fetch(topics.DELETE, user_id, ids, now)
        await self._offset(conn, user_id, "delete", hidden, now)
        counts = await self._settle(conn, {user_id: removed_moves(rows)}, now)
        return [row["id"] for row in rows] + [row["id"] for row in hidden], counts.get(
            user_id, Counts()
        )

    async def expire(self, *, now_ms: int, limit: int = 5000) -> list[Expired]:
        return await self._transaction(self._expire, now_ms, limit)

    async def _expire(self, conn: Any, now: int, limit: int) -> list[Expired]:
        # Personal items first, under their streams' locks; then topic items,
        # whose locks (receipts, topics) come after streams in the global order.
        swept = await self._expire_personal(conn, now, limit)
        swept += await self._expire_topics(conn, now, limit - sum(len(e.ids) for e in swept))
        return swept

    async def _expire_topics(self, conn: Any, now: int, limit: int) -> list[Expired]:
        due = await conn.fetch(topics.EXPIRING, now, limit) if limit > 0 else []
        if not due:
            return []
        await conn.execute(topics.LOCK_SWEPT, sorted({row["topic"] for row in due}))
        rows = await conn.fetch(
            topics.DELETE_EXPIRED, [row["topic"] for row in due], [row["seq"] for row in due], now
        )
        if not rows:
            return []
        order = {(row["topic"], row["seq"]): i for i, row in enumerate(due)}
        rows = sorted(rows, key=lambda row: order[row["topic"], row["seq"]])
        names, seqs = [row["topic"] for row in rows], [row["seq"] for row in rows]
        by_topic: dict[str, list[str]] = {}
        swept: dict[str, list[int]] = {}
        for row in rows:
            by_topic.setdefault(row["topic"], []).append(row["id"])
            swept.setdefault(row["topic"], []).append(row["seq"])
        for topic, topic_seqs in swept.items():
            await self._give_back(conn, topic, sorted(topic_seqs))
        await conn.execute(topics.DELETE_EXPIRED_RECEIPTS, names, seqs)
        await conn.execute(topics.TRIM_TOPICS, names, seqs)
        return [Expired("", tuple(ids), None, topic=topic) for topic, ids in by_topic.items()]

    async def _give_back(self, conn: Any, topic: str, swept: list[int]) -> None:
        """Move the offsets of the subscribers of ``topic`` who did not count
        some of the ``swept`` items (``core.counters.swept_offsets``)."""
        receipts: dict[str, dict[int, Receipt]] = {}
        for row in await conn.fetch(topics.SWEPT_RECEIPTS, topic, swept):
            receipts.setdefault(row["user_id"], {})[row["seq"]] = Receipt(
                row["read_at"],
                bool(row["unread"]),
                row["seen_at"],
                row["archived_at"],
                bool(row["deleted"]),
            )
        moves: dict[str, Moves] = {}
        for row in await conn.fetch(topics.SWEPT_SUBSCRIBERS, topic, swept[0], swept[-1]):
            sub = Subscription(row["from_seq"], row["read_upto"], row["seen_upto"])
            move = swept_offsets(swept, sub, receipts.get(row["user_id"], {}))
            if any(move):
                moves[row["user_id"]] = move
        if moves:
            columns = [list(column) for column in zip(*moves.values(), strict=True)]
            await conn.execute(topics.SWEPT_OFFSETS, topic, list(moves), *columns)

    async def _expire_personal(self, conn: Any, now: int, limit: int) -> list[Expired]:
        due = await conn.fetch(sql.EXPIRING, now, limit)
        if not due:
            return []
        await conn.execute(sql.LOCK_STREAMS, sorted({row["user_id"] for row in due}))
        rows = await conn.fetch(
            sql.DELETE_EXPIRED, [row["user_id"] for row in due], [row["seq"] for row in due], now
        )
        # Another node's sweep may have taken some first: report only ours, in
        # expiry order as the candidates came.
        order = {(row["user_id"], row["seq"]): i for i, row in enumerate(due)}
        by_user: dict[str, list[Any]] = {}
        for row in sorted(rows, key=lambda row: order[row["user_id"], row["seq"]]):
            by_user.setdefault(row["user_id"], []).append(row)
        # Retention cut each stream up to its highest swept seq: a replay from
        # below is incomplete.
        moves = {
            user: removed_moves(items, trimmed=max(row["seq"] for row in items))
            for user, items in by_user.items()
        }
        counts = await self._settle(conn, moves, now)
        return [
            Expired(user, tuple(row["id"] for row in items), counts[user])
            for user, items in by_user.items()
        ]

    async def trim(
        self, user_ids: Sequence[str], *, keep: int, now_ms: int, limit: int = 5000
    ) -> list[Expired]:
        users = sorted({user for user in user_ids if storable(user)})
        if not users:
            return []
        return await self._transaction(self._trim, users, keep, limit, now_ms)

    async def _trim(
        self, conn: Any, users: list[str], keep: int, limit: int, now: int
    ) -> list[Expired]:
        heads = {row["user_id"]: row["head"] for row in await conn.fetch(sql.LOCK_STREAMS, users)}
        by_user: dict[str, list[Any]] = {}
        for row in sorted(await conn.fetch(sql.TRIM_STREAMS, users, keep, limit), key=by_seq):
            by_user.setdefault(row["user_id"], []).append(row)
        moves = {
            user: removed_moves(
                rows, trimmed=heads[user] - keep if len(rows) < limit else rows[-1]["seq"]
            )
            for user, rows in by_user.items()
        }
        if not moves:
            return []
        counts = await self._settle(conn, moves, now)
        return [
            Expired(user, tuple(row["id"] for row in rows), counts[user])
            for user, rows in by_user.items()
        ]

    async def _settle(
        self, conn: Any, moves: dict[str, StreamMoves], now: int
    ) -> dict[str, Counts]:
        """Move the counters (under the stream locks the caller holds) and read
        the counts after the change."""
        if any(any(move) for move in moves.values()):
            columns = zip(*moves.values(), strict=True)
            rows = await conn.fetch(sql.ADJUST_COUNTS, list(moves), *map(list, columns), now)
        else:
            rows = await conn.fetch(sql.COUNTS, list(moves), now)
        return {row["user_id"]: counts_of(row) for row in rows}

    async def erase(self, user_id: str) -> int:
        if not storable(user_id):
            return 0
        return await self._transaction(self._erase, user_id)

    async def _erase(self, conn: Any, user_id: str) -> int:
        await conn.execute(sql.ERASE_KEYS, user_id)
        await conn.execute(sql.LOCK_STREAMS, [user_id])
        await conn.execute(topics.LOCK_TOPICS, user_id)
        status: str = await conn.execute(sql.ERASE_ITEMS, user_id)
        await conn.execute(sql.ERASE_STREAM, user_id)
        await conn.execute(topics.ERASE_RECEIPTS, user_id)
        await conn.execute(topics.ERASE_SUBSCRIPTIONS, user_id)
        return int(status.rsplit(" ", 1)[-1])

    # -- topics --------------------------------------------------------------

    async def read_topic(
        self, topic: str, *, after_seq: int, limit: int = PAGE_LIMIT
    ) -> StreamPage:
        if not storable(topic):
            return StreamPage(items=[], head=0, trimmed=0)
        rows = await self._fetch(
            topics.READ_TOPIC, topic, after_seq, now_ms(), min(limit, PAGE_LIMIT)
        )
        if not rows:
            return StreamPage(items=[], head=0, trimmed=0)
        items = [to_notification("", row, topic) for row in rows if row["seq"] is not None]
        return StreamPage(items=items, head=rows[0]["head"], trimmed=rows[0]["trimmed"])

    async def subscribe(self, user_ids: Sequence[str], topic: str) -> dict[str, int]:
        users = [user for user in dict.fromkeys(user_ids) if storable(user)]
        if not users or not storable(topic):
            return {}

        async def run(conn: Any) -> dict[str, int]:
            stream = await conn.fetchrow(topics.LOCK_TOPIC, topic)
            head, alive = (stream["head"], stream["alive"]) if stream else (0, 0)
            await conn.execute(topics.SUBSCRIBE, users, topic, head, now_ms(), alive)
            rows = await conn.fetch(topics.STARTS, users, topic)
            return {row["user_id"]: row["from_seq"] for row in rows}

        starts = await self._transaction(run)
        return {user: starts[user] for user in users if user in starts}

    async def unsubscribe(self, user_id: str, topic: str) -> bool:
        if not storable(user_id) or not storable(topic):
            return False

        async def run(conn: Any) -> bool:
            await self._lock_user(conn, user_id)
            status: str = await conn.execute(topics.UNSUBSCRIBE, user_id, topic)
            await conn.execute(topics.FORGET_TOPIC, user_id, topic)
            return status != "DELETE 0"

        return await self._transaction(run)

    async def subscriptions(self, user_id: str) -> dict[str, int]:
        rows = await self._fetch(topics.SUBSCRIPTIONS, user_id) if storable(user_id) else []
        subscribed = {row["topic"]: row["from_seq"] for row in rows}
        subscribed.setdefault(EVERYONE, 0)
        return subscribed
