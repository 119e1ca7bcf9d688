"""The topic counters under every change that moves them, on every backend.

Topic counts are kept, not counted: a topic's ``alive`` counter plus offsets
per subscription (``tidings.core.counters``). This contract drives one random
history through everything that moves them (publishes, late subscriptions,
unsubscribing and joining again, marks by ids and up to an id, deletes,
items published already expired, and sweeps, some cut short by their limit)
and checks the counts a change returns, the counts read after it and a
recount from the items against a plain Python model of each inbox.
"""

from __future__ import annotations

import random

from tests.inbox_contract import _MARKS, Inbox, Item, assert_counts, walk
from tests.store_contract import now_ms, publish, request
from tidings.core.inbox import EVERYONE, InboxFilter, Mark
from tidings.core.models import Counts, PublishRequest
from tidings.store.base import Store

USERS = ("bob", "carol", "dave", "erin")
"""bob and carol are in news from the start, dave joins it late, carol leaves
sports and joins it again, erin is in ``everyone`` only."""

HOUR_MS = 3_600_000


class TopicCountsContract:
    async def test_topic_counts_stay_exact_through_sweeps_and_late_subscriptions(
        self, store: Store
    ) -> None:
        rng = random.Random(29)
        topics: dict[str, set[str]] = {user: set() for user in USERS}
        models = {user: Inbox([]) for user in USERS}
        expiry: dict[str, int] = {}
        published: list[str] = []

        async def join(user: str, topic: str) -> None:
            await store.subscribe([user], topic)
            topics[user].add(topic)

        async def leave(user: str, topic: str) -> None:
            assert await store.unsubscribe(user, topic)
            topics[user].discard(topic)
            for id_ in [i for i, item in models[user].items.items() if item.tags == (topic,)]:
                del models[user].items[id_]

        async def publish_one(expires_at: int | None) -> None:
            kind = rng.choice(["news", "news", "sports", EVERYONE, "bob"])
            r: PublishRequest
            if kind == "bob":
                r = request("bob", expires_at=expires_at)
            else:  # the topic rides in the tags, so the model knows where an item came from
                r = publish(kind, tags=(kind,), expires_at=expires_at)
            await store.append(r)
            published.append(r.id)
            if expires_at is not None:
                expiry[r.id] = expires_at
            if expires_at is not None and expires_at <= now_ms():
                return  # expired on arrival: never anyone's
            for user in USERS:
                if (
                    (r.topic is None and user in r.recipients)
                    or r.topic == EVERYONE
                    or r.topic in topics[user]
                ):
                    models[user].items[r.id] = Item(r.id, r.created_at, r.tags)

        async def change_one(step: int) -> None:
            user = rng.choice(USERS)
            model = models[user]
            if rng.random() < 0.3:
                action = rng.choice(["read", "seen", "read", "archive", "unread"])
                last = rng.choice(published)
                changed, counts = await store.mark(user, Mark(action, up_to=last))
                assert sorted(changed) == model.apply(action, model.up_to(last)), (step, action)
            else:
                action = rng.choice([*_MARKS, "delete"])
                chosen = rng.sample(published, min(len(published), rng.randint(1, 6)))
                if action == "delete":
                    changed, counts = await store.delete(user, chosen)
                else:
                    changed, counts = await store.mark(user, Mark(action, ids=tuple(chosen)))
                assert sorted(changed) == model.apply(action, chosen), (step, action)
            assert counts == model.counts(), (step, user, action)

        async def sweep(until: int, limit: int) -> None:
            while await store.expire(now_ms=until, limit=limit):
                pass
            for model in models.values():
                for id_ in [i for i in model.items if expiry.get(i, until + 1) <= until]:
                    del model.items[id_]

        await join("bob", "news")
        await join("carol", "news")
        await join("carol", "sports")
        base = now_ms() + HOUR_MS
        for round_ in range(5):
            for _ in range(14):
                roll = rng.random()
                if roll < 0.3:  # swept at the end of the next round
                    await publish_one(base + round_)
                elif roll < 0.4:
                    await publish_one(now_ms() - 1)
                else:
                    await publish_one(None)
            if round_ == 1:
                await join("dave", "news")
            if round_ == 2:
                await leave("carol", "sports")
            if round_ == 3:
                await join("carol", "sports")
            for step in range(30):
                await change_one(round_ * 100 + step)
            for user in USERS:
                await assert_counts(store, user, models[user].counts())
            if round_:
                await sweep(base + round_ - 1, limit=rng.choice([2, 5000]))
                for user in USERS:
                    await assert_counts(store, user, models[user].counts())
        await sweep(base + 10, limit=5000)
        everything = InboxFilter(archived="include")
        for user in USERS:
            await assert_counts(store, user, models[user].counts())
            assert await walk(store, user, everything) == models[user].listed(everything)

    async def test_mark_all_spares_a_larger_id_stored_at_a_lower_seq(self, store: Store) -> None:
        """Ids are made on many nodes and seqs at commit: an item with a larger id
        can get the lower seq. A mark-all-read up to the smaller id reads only
        what it names, whatever the marker can cover."""
        await store.subscribe(["bob"], "news")
        older, newer = publish("news"), publish("news")
        assert older.id < newer.id
        for r in (newer, older):  # the newer id commits first: seq 1
            await store.append(r)
        for action in ("read", "seen"):
            changed, _ = await store.mark("bob", Mark(action, up_to=older.id))
            assert changed == [older.id], action
        await assert_counts(store, "bob", Counts(2, 1, 1))
        changed, _ = await store.mark("bob", Mark("read", up_to=newer.id))
        assert changed == [newer.id]
        await assert_counts(store, "bob", Counts(2, 0, 1))
        assert (await store.mark("bob", Mark("read", up_to=newer.id)))[0] == []


UNDO_TOPIC_COUNTERS = """
DROP INDEX topic_notifications_topic_expiry;
ALTER TABLE topics DROP COLUMN alive;
ALTER TABLE subscriptions DROP COLUMN total_off;
ALTER TABLE subscriptions DROP COLUMN unread_off;
ALTER TABLE subscriptions DROP COLUMN unseen_off;
DELETE FROM subscriptions WHERE topic = 'everyone' AND read_upto = 0 AND seen_upto = 0;
DROP TABLE revocations;
UPDATE schema_version SET version = 3;
"""
"""Turn a database back into what version 3 wrote (no topic counters, no revocations,
no ``everyone`` row for a user with only receipts there), to migrate it again."""


async def topic_history(store: Store) -> dict[str, Counts]:
    """Topic state of every kind for a few users; returns their counts."""
    await store.subscribe(["bob", "carol"], "news")
    early = [await store.append(publish(name)) for name in ("news", EVERYONE, "news")]
    await store.subscribe(["dave"], "news")
    late = [await store.append(publish(name)) for name in ("news", EVERYONE, "news", EVERYONE)]
    await store.append(publish("news", expires_at=now_ms() - 1))
    await store.mark("bob", Mark("read", up_to=late[1].id))
    await store.mark("bob", Mark("unread", ids=(early[0].id,)))
    await store.mark("carol", Mark("archive", ids=(early[2].id, late[0].id)))
    await store.mark("carol", Mark("seen", up_to=late[2].id))
    await store.delete("dave", [late[0].id])
    await store.mark("erin", Mark("read", ids=(late[1].id,)))
    counts = {user: await store.counts(user) for user in USERS}
    for user in USERS:
        await assert_counts(store, user, counts[user])
    return counts
