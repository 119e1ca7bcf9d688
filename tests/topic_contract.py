"""The topic contract: stored once, per-subscriber state, sweeps, on every backend."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from tests.inbox_contract import (
    _MARKS,
    ACTIONS,
    Inbox,
    Item,
    assert_counts,
    assert_recounted,
    change,
    random_change,
    walk,
)
from tests.store_contract import append_all, now_ms, publish, request
from tidings.core.errors import IdempotencyConflict
from tidings.core.inbox import EVERYONE, InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, PublishRequest
from tidings.store.base import Expired, Store


async def read_topic_all(store: Store, topic: str) -> list[Any]:
    items: list[Any] = []
    after = 0
    while True:
        page = await store.read_topic(topic, after_seq=after)
        items.extend(page.items)
        if not page.items:
            return items
        after = page.items[-1].seq


def sees(user_subscriptions: dict[str, Sequence[str]], user: str, r: PublishRequest) -> bool:
    """Whether ``user`` (in the topics given, and ``everyone``) has ``r`` in their inbox."""
    if r.topic is None:
        return user in r.recipients
    return r.topic == EVERYONE or r.topic in user_subscriptions.get(user, ())


class TopicContract:
    async def test_topic_publish_is_stored_once_with_gapless_seqs(self, store: Store) -> None:
        batch = [publish("news", message=f"n{n}") for n in range(150)]
        batch += [publish("everyone") for _ in range(30)] + [request("bob") for _ in range(20)]
        results = await append_all(store, batch)
        news = [r for r in results if r.topic == "news"]
        assert sorted(r.topic_seq for r in news) == list(range(1, 151))
        assert all(r.seqs == () and not r.duplicate for r in news)
        for r in news:
            [stored] = r.stored
            assert (stored.topic, stored.user_id, stored.seq, stored.id) == (
                "news",
                "",
                r.topic_seq,
                r.id,
            )
        everyone = [r.topic_seq for r in results if r.topic == "everyone"]
        assert sorted(everyone) == list(range(1, 31))
        assert all(r.topic is None and r.topic_seq == 0 for r in results[180:])
        stored = await read_topic_all(store, "news")
        assert [n.seq for n in stored] == list(range(1, 151))
        by_seq = {r.topic_seq: r.stored[0] for r in news}
        assert all(by_seq[n.seq] == n for n in stored)
        page = await store.read_topic("news", after_seq=140, limit=5)
        assert ([n.seq for n in page.items], page.head, page.trimmed) == (
            [141, 142, 143, 144, 145],
            150,
            0,
        )
        head_only = await store.read_topic("news", after_seq=2**62, limit=1)
        assert (head_only.items, head_only.head) == ([], 150)
        assert await store.heads(["bob"]) == {"bob": 20}
        unknown = await store.read_topic("nothing", after_seq=0)
        assert (unknown.items, unknown.head, unknown.trimmed) == ([], 0, 0)

    async def test_topic_fields_round_trip(self, store: Store) -> None:
        later = now_ms() + 3_600_000
        data = {"a": [1, "two", None], "é": 0.5}
        sent = publish(
            "everyone", message="héllo", data=data, tags=("x", "ünï"), expires_at=later, sender=None
        )
        result = await store.append(sent)
        [item] = (await store.read_topic("everyone", after_seq=0)).items
        assert item == result.stored[0]
        assert (item.message, item.data, item.tags, item.expires_at, item.sender) == (
            "héllo",
            data,
            ("x", "ünï"),
            later,
            None,
        )
        [listed], more = await store.list_inbox("bob", InboxQuery(InboxFilter()))
        assert (listed.notification, listed.user_id, more) == (item, "bob", False)
        wire = listed.to_json()
        assert (wire["userId"], wire["topic"], wire["seq"]) == ("bob", "everyone", 1)

    async def test_topic_idempotent_repeat_returns_first_result(self, store: Store) -> None:
        first = await store.append(publish("news", key="k1"))
        again = await store.append(publish("news", key="k1"))
        assert again.duplicate and not first.duplicate and again.stored == ()
        assert (again.id, again.topic, again.topic_seq) == (first.id, "news", 1)
        results = await append_all(store, [publish("news", key="k2") for _ in range(10)])
        assert [r.duplicate for r in results].count(False) == 1
        assert {(r.id, r.topic, r.topic_seq) for r in results} == {(results[0].id, "news", 2)}
        with pytest.raises(IdempotencyConflict):
            await store.append(publish("news", key="k1", message="another body"))
        assert (await store.read_topic("news", after_seq=0)).head == 2

    async def test_subscription_starts_at_the_topic_head(self, store: Store) -> None:
        for n in range(3):
            await store.append(publish("news", message=f"before{n}"))
        assert await store.subscriptions("bob") == {EVERYONE: 0}
        assert await store.subscribe(["bob", "carol", "bob"], "news") == {"bob": 3, "carol": 3}
        after = await store.append(publish("news", message="after"))
        assert await store.subscribe(["bob", "dave"], "news") == {"bob": 3, "dave": 4}
        assert await store.subscribe([], "news") == {}
        assert await store.subscribe(["erin"], "fresh") == {"erin": 0}
        assert await store.subscriptions("bob") == {"news": 3, EVERYONE: 0}
        assert await walk(store, "bob") == [after.id]
        assert await walk(store, "dave") == []
        await assert_counts(store, "bob", Counts(1, 1, 1))
        await assert_counts(store, "dave", Counts())
        fresh = await store.append(publish("fresh"))
        assert await walk(store, "erin") == [fresh.id]
        # Leaving takes the topic out of the inbox, and its receipts with it.
        await store.mark("bob", Mark("archive", ids=(after.id,)))
        assert len((await store.export("bob"))["receipts"]) == 1
        assert await store.unsubscribe("bob", "news") is True
        assert await store.unsubscribe("bob", "news") is False
        assert await store.subscriptions("bob") == {EVERYONE: 0}
        assert await walk(store, "bob", InboxFilter(archived="include")) == []
        assert (await store.export("bob"))["receipts"] == []
        await assert_counts(store, "bob", Counts())
        # Back in: from the head, nothing from before.
        assert await store.subscribe(["bob"], "news") == {"bob": 4}
        assert await walk(store, "bob", InboxFilter(archived="include")) == []
        assert await walk(store, "carol") == [after.id]

    async def test_each_subscriber_has_its_own_state(self, store: Store) -> None:
        await store.subscribe(["bob", "carol"], "news")
        sent = [publish("news", message=f"n{n}") for n in range(6)]
        for r in sent:
            await store.append(r)
        ids = [r.id for r in sent]
        bob = Inbox(sent)
        for action, chosen in [
            ("read", ids[:2]),
            ("seen", ids[1:4]),
            ("archive", [ids[2]]),
            ("delete", [ids[3]]),
        ]:
            changed, counts = await change(store, "bob", action, chosen)
            assert sorted(changed) == bob.apply(action, chosen), action
            assert counts == bob.counts(), action
        await assert_counts(store, "bob", bob.counts())
        everything = InboxFilter(archived="include")
        items, _ = await store.list_inbox("bob", InboxQuery(everything, limit=10))
        assert [i.notification.id for i in items] == bob.listed(everything)
        for i in items:
            model = bob.items[i.notification.id]
            assert (i.read_at is not None, i.seen_at is not None, i.archived_at is not None) == (
                model.read,
                model.seen,
                model.archived,
            )
        await assert_counts(store, "carol", Counts(6, 6, 6))
        assert await walk(store, "carol") == sorted(ids, reverse=True)
        # Carol deletes the item Bob archived: from her inbox only.
        assert await store.delete("carol", [ids[2]]) == ([ids[2]], Counts(5, 5, 5))
        assert await walk(store, "bob", InboxFilter(archived="only")) == [ids[2]]
        assert await store.mark("carol", Mark("read", ids=(ids[2],))) == ([], Counts(5, 5, 5))
        assert await store.delete("carol", [ids[2]]) == ([], Counts(5, 5, 5))
        # Someone not subscribed cannot touch them.
        assert await store.mark("dave", Mark("read", ids=tuple(ids))) == ([], Counts())
        assert await store.mark("dave", Mark("read", up_to=ids[-1])) == ([], Counts())
        assert await store.delete("dave", ids) == ([], Counts())
        await assert_counts(store, "bob", bob.counts())

    async def test_mark_all_moves_markers_and_overrides_receipts(self, store: Store) -> None:
        await store.subscribe(["bob"], "news")
        kinds = ["news", EVERYONE, "personal"] * 3
        sent = [
            request("bob", message=f"m{n}")
            if kind == "personal"
            else publish(kind, message=f"m{n}")
            for n, kind in enumerate(kinds)
        ]
        for r in sent:
            await store.append(r)
        inbox = Inbox(sent)
        ids = [r.id for r in sent]
        steps: list[tuple[str, tuple[str, ...] | None, str | None]] = [
            ("read", (ids[1],), None),
            ("unread", (ids[1],), None),
            ("read", None, ids[4]),  # the marker reads ids[1] again
            ("unread", (ids[0], ids[3]), None),  # overrides below the marker
            ("read", None, ids[3]),  # the marker stays, the overrides go
            ("seen", None, ids[-1]),
            ("unread", None, ids[5]),
            ("archive", None, ids[2]),
            ("read", None, ids[-1]),
            ("unarchive", None, ids[-1]),
            ("seen", None, ids[4]),
            ("read", None, "0" * 26),
        ]
        for action, chosen, last in steps:
            mark = Mark(action, ids=chosen, up_to=last)
            changed, counts = await store.mark("bob", mark)
            targets = list(chosen) if chosen is not None else inbox.up_to(last or "")
            assert sorted(changed) == inbox.apply(action, targets), mark
            assert counts == inbox.counts(), mark
            await assert_counts(store, "bob", inbox.counts())
        late = await store.append(publish("news", message="late"))
        inbox.items[late.id] = Item(late.id, 0)
        await assert_counts(store, "bob", inbox.counts())
        assert inbox.counts().unread == 1
        exported = await store.export("bob")
        markers = {s["topic"]: s for s in exported["subscriptions"]}
        assert markers == {
            EVERYONE: {"topic": EVERYONE, "fromSeq": 0, "readUpTo": 3, "seenUpTo": 3},
            "news": {"topic": "news", "fromSeq": 0, "readUpTo": 3, "seenUpTo": 3},
        }
        assert await store.subscriptions("bob") == {"news": 0, EVERYONE: 0}
        items, _ = await store.list_inbox("bob", InboxQuery(InboxFilter(), limit=20))
        assert all(i.read_at is not None for i in items if i.notification.id != late.id)

    async def test_inbox_merges_personal_and_topic_items_in_id_order(self, store: Store) -> None:
        subscribed = {"bob": ("news", "sports")}
        await store.subscribe(["bob"], "news")
        await store.subscribe(["bob"], "sports")
        rng = random.Random(11)
        base = now_ms() - 100_000
        tag_sets = [("billing",), ("news",), (), ("billing", "news")]
        sent = []
        for n in range(40):
            kind = rng.choice(["personal", "news", "sports", EVERYONE, "other", "carol"])
            fields: dict[str, Any] = {
                "created_at": base + n * 1000,
                "tags": tag_sets[n % 4],
                "message": f"{kind}{n}",
            }
            if kind == "personal":
                sent.append(request("bob", **fields))
            elif kind == "carol":
                sent.append(request("carol", **fields))
            else:
                sent.append(publish(kind, **fields))
        for r in sent:
            await store.append(r)
        mine = [r for r in sent if sees(subscribed, "bob", r)]
        inbox = Inbox(mine)
        ids = [r.id for r in mine]
        for action, chosen in [
            ("read", ids[::2]),
            ("seen", ids[3:20]),
            ("archive", ids[5::4]),
            ("delete", ids[7::9]),
        ]:
            await change(store, "bob", action, chosen)
            inbox.apply(action, chosen)
        filters = {
            "all": InboxFilter(),
            "read": InboxFilter(read=True),
            "unread": InboxFilter(read=False),
            "unseen": InboxFilter(seen=False),
            "with archived": InboxFilter(archived="include"),
            "archived": InboxFilter(archived="only"),
            "billing": InboxFilter(tags=("billing",)),
            "between": InboxFilter(created_after=base + 5000, created_before=base + 30000),
            "mixed": InboxFilter(read=False, seen=False, tags=("news",), archived="include"),
        }
        counted = await store.count_filters("bob", filters)
        for name, f in filters.items():
            expected = inbox.listed(f)
            assert await walk(store, "bob", f, limit=3) == expected, name
            assert await walk(store, "bob", f, newest_first=False, limit=4) == expected[::-1], name
            assert counted[name] == len(expected), name
        topic_of = {r.id: r.topic for r in sent}
        items, _ = await store.list_inbox("bob", InboxQuery(InboxFilter(archived="include")))
        assert len(items) == len(inbox.items)
        for item in items:
            assert item.user_id == "bob"
            assert item.notification.topic == topic_of[item.notification.id]
            assert item.notification.user_id == ("" if item.notification.topic else "bob")
        await assert_counts(store, "bob", inbox.counts())

    async def test_topic_counts_follow_random_changes_exactly(self, store: Store) -> None:
        subscribed = {"bob": ("news", "sports"), "carol": ("news",)}
        for user, names in subscribed.items():
            for name in names:
                await store.subscribe([user], name)
        models = {user: Inbox([]) for user in subscribed}
        published: list[str] = []
        rng = random.Random(17)

        async def publish_one() -> None:
            kind = rng.choice(["bob", "carol", "news", "sports", EVERYONE, "other"])
            r = request(kind) if kind in subscribed else publish(kind)
            await store.append(r)
            published.append(r.id)
            for user, model in models.items():
                if sees(subscribed, user, r):
                    model.items[r.id] = Item(r.id, r.created_at)

        for _ in range(30):
            await publish_one()
        for step in range(100):
            if rng.random() < 0.1:
                await publish_one()
                continue
            user = "bob" if rng.random() < 0.75 else "carol"
            model = models[user]
            if rng.random() < 0.3:
                action = rng.choice(list(_MARKS))
                last = rng.choice(published)
                changed, counts = await store.mark(user, Mark(action, up_to=last))
                assert sorted(changed) == model.apply(action, model.up_to(last)), (step, action)
            else:
                action = rng.choice(ACTIONS if step % 6 == 5 else ACTIONS[:-1])
                chosen = rng.sample(published, rng.randint(1, 8))
                changed, counts = await change(store, user, action, [*chosen, chosen[0]])
                assert sorted(changed) == model.apply(action, chosen), (step, action)
            assert counts == model.counts(), (step, action)
            await assert_counts(store, user, model.counts())
        for user, model in models.items():
            everything = InboxFilter(archived="include")
            assert await walk(store, user, everything) == model.listed(everything)
            await assert_counts(store, user, model.counts())

    async def test_a_user_with_only_topic_items(self, store: Store) -> None:
        """No personal stream yet: counts, marks and deletes work on the topic items,
        and a first personal notification still gets seq 1."""
        first = await store.append(publish(EVERYONE))
        second = await store.append(publish(EVERYONE))
        await assert_counts(store, "newbie", Counts(2, 2, 2))
        assert await store.mark("newbie", Mark("read", ids=(first.id,))) == (
            [first.id],
            Counts(2, 1, 2),
        )
        changed, counts = await store.mark("newbie", Mark("seen", up_to=second.id))
        assert (sorted(changed), counts) == (sorted([first.id, second.id]), Counts(2, 1, 0))
        assert await store.delete("newbie", [second.id]) == ([second.id], Counts(1, 0, 0))
        assert await store.heads(["newbie"]) == {"newbie": 0}
        page = await store.read_stream("newbie", after_seq=0)
        assert (page.items, page.head, page.trimmed) == ([], 0, 0)
        assert (await store.append(request("newbie"))).seqs == (("newbie", 1),)
        await assert_counts(store, "newbie", Counts(2, 1, 1))
        await assert_counts(store, "other", Counts(2, 2, 2))

    async def test_expired_topic_items_are_invisible_then_swept(self, store: Store) -> None:
        start = now_ms()
        await store.subscribe(["bob", "carol"], "news")
        keep = publish("news", message="keep")
        soon = [publish("news", message=f"soon{n}", expires_at=start + 1000) for n in range(3)]
        past = publish("news", message="past", expires_at=start - 1)
        flash = publish(EVERYONE, message="flash", expires_at=start + 1000)
        mine = request("bob", message="mine", expires_at=start + 1000)
        for r in [keep, *soon, past, flash, mine]:
            await store.append(r)
        everything = InboxFilter(archived="include")
        assert past.id not in await walk(store, "bob", everything)
        await store.mark("bob", Mark("read", ids=(soon[0].id,)))
        await store.mark("bob", Mark("archive", ids=(soon[1].id,)))
        await assert_counts(store, "bob", Counts(5, 4, 5))
        page = await store.read_topic("news", after_seq=0)
        assert ([n.message for n in page.items], page.head) == (
            ["keep", "soon0", "soon1", "soon2"],
            5,
        )
        assert now_ms() < start + 1000, "too slow to check before expiry"
        await asyncio.sleep((start + 1100 - now_ms()) / 1000)

        # Expired, not swept: gone from every read, and from the counts.
        for user in ("bob", "carol"):
            await assert_counts(store, user, Counts(1, 1, 1))
            assert await walk(store, user, everything) == [keep.id]
        page = await store.read_topic("news", after_seq=0)
        assert ([n.message for n in page.items], page.head, page.trimmed) == (["keep"], 5, 0)
        page = await store.read_topic(EVERYONE, after_seq=0)
        assert (page.items, page.head) == ([], 1)

        swept = await store.expire(now_ms=now_ms())
        by_topic = {e.topic: e for e in swept if e.topic is not None}
        assert set(by_topic) == {"news", EVERYONE}
        news = by_topic["news"]
        assert (news.user_id, news.counts, news.ids[0]) == ("", None, past.id)
        assert sorted(news.ids) == sorted([past.id, *(r.id for r in soon)])
        assert by_topic[EVERYONE] == Expired("", (flash.id,), None, topic=EVERYONE)
        [personal] = [e for e in swept if e.topic is None]
        assert (personal.user_id, personal.ids, personal.counts) == (
            "bob",
            (mine.id,),
            Counts(1, 1, 1),
        )
        page = await store.read_topic("news", after_seq=0)
        assert ([n.message for n in page.items], page.head, page.trimmed) == (["keep"], 5, 5)
        assert (await store.read_topic(EVERYONE, after_seq=0)).trimmed == 1
        assert (await store.export("bob"))["receipts"] == []
        await assert_counts(store, "bob", Counts(1, 1, 1))
        assert await store.expire(now_ms=now_ms()) == []
        assert await store.mark("bob", Mark("unarchive", ids=(soon[1].id,))) == (
            [],
            Counts(1, 1, 1),
        )

    async def test_topic_expire_takes_at_most_limit(self, store: Store) -> None:
        start = now_ms()
        for n in range(5):
            await store.append(publish(f"t{n % 2}", expires_at=start - 100 + n))
        first = await store.expire(now_ms=start, limit=3)
        assert sum(len(e.ids) for e in first) == 3
        second = await store.expire(now_ms=start, limit=3)
        assert sum(len(e.ids) for e in second) == 2
        assert await store.expire(now_ms=start, limit=3) == []
        heads = [(await store.read_topic(t, after_seq=0)).head for t in ("t0", "t1")]
        assert heads == [3, 2]

    async def test_export_then_erase_covers_topics(self, store: Store) -> None:
        await store.subscribe(["bob"], "news")
        a = await store.append(publish("news"))
        b = await store.append(publish(EVERYONE))
        c = await store.append(publish("news"))
        await store.mark("bob", Mark("archive", ids=(c.id,)))
        await store.mark("bob", Mark("read", up_to=b.id))
        exported = await store.export("bob")
        assert exported["subscriptions"] == [
            {"topic": EVERYONE, "fromSeq": 0, "readUpTo": 1, "seenUpTo": 0},
            {"topic": "news", "fromSeq": 0, "readUpTo": 1, "seenUpTo": 0},
        ]
        [receipt] = exported["receipts"]
        assert isinstance(receipt.pop("archivedAt"), int)
        assert receipt == {
            "topic": "news",
            "seq": 2,
            "readAt": None,
            "unread": 0,
            "seenAt": None,
            "deleted": 0,
        }
        assert exported["counts"] == {"total": 2, "unread": 0, "unseen": 2}
        assert (exported["notifications"], exported["head"]) == ([], 0)

        assert await store.erase("bob") == 0
        after = await store.export("bob")
        assert (after["subscriptions"], after["receipts"]) == ([], [])
        assert await store.subscriptions("bob") == {EVERYONE: 0}
        # Only the broadcast is left in the inbox, unread again.
        assert await walk(store, "bob", InboxFilter(archived="include")) == [b.id]
        await assert_counts(store, "bob", Counts(1, 1, 1))
        # The topic items stay, for everyone else.
        assert [n.id for n in await read_topic_all(store, "news")] == [a.id, c.id]
        nobody = await store.export("nobody")
        assert (nobody["subscriptions"], nobody["receipts"]) == ([], [])

    async def test_concurrent_topic_marks_count_each_change_once(self, store: Store) -> None:
        await store.subscribe(["bob"], "news")
        results = await append_all(
            store, [publish("news" if n % 2 else EVERYONE) for n in range(120)]
        )
        ids = sorted(r.id for r in results)
        rng = random.Random(5)
        chunks = [rng.sample(ids, 20) for _ in range(12)]
        touched = set().union(*chunks)
        for action in ("read", "archive", "unread"):
            outcomes = await asyncio.gather(
                *(store.mark("bob", Mark(action, ids=tuple(chunk))) for chunk in chunks)
            )
            changed = [id_ for got, _ in outcomes for id_ in got]
            assert sorted(changed) == sorted(touched), action
        for action in ("read", "seen"):
            outcomes = await asyncio.gather(
                *(store.mark("bob", Mark(action, up_to=ids[n])) for n in range(9, 120, 10))
            )
            changed = [id_ for got, _ in outcomes for id_ in got]
            assert sorted(changed) == ids, action  # each item once, whoever moved the marker
        live = len(ids) - len(touched)
        await assert_counts(store, "bob", Counts(live, 0, 0))

    async def test_concurrent_topic_changes_leave_exact_counts(self, store: Store) -> None:
        await concurrent_topic_changes([store], users=("bob", "carol"), tasks=16, steps=12)


async def concurrent_topic_changes(
    stores: Sequence[Store], *, users: Sequence[str], tasks: int, steps: int
) -> None:
    """``concurrent_changes`` with topics: topic publishes, subscriptions coming
    and going, marks by ids and up to an id (markers), hides and sweeps of
    shared items, from many tasks on every store at once; then every count must
    equal a recount and nothing may have been removed twice."""
    start = now_ms()
    expiry = {0: start - 1, 1: start + 200}
    await stores[0].subscribe(list(users), "news")
    setup = [publish("news", expires_at=expiry.get(n % 10)) for n in range(60)]
    setup += [publish(EVERYONE, expires_at=expiry.get(n % 10)) for n in range(30)]
    setup += [request(u, expires_at=expiry.get(n % 10)) for u in users for n in range(20)]
    await append_all(stores[0], setup)
    removed: list[tuple[str, str]] = []
    swept: list[tuple[str | None, str, str]] = []

    async def task(seed: int) -> None:
        rng = random.Random(seed)
        store = stores[seed % len(stores)]
        for _ in range(steps):
            user = rng.choice(users)
            what = rng.random()
            if what < 0.1:
                topic = rng.choice(["news", EVERYONE, "sports"])
                await store.append(publish(topic, expires_at=rng.choice([None, expiry[1]])))
                continue
            if what < 0.15:
                await store.append(request(*rng.sample(users, 2)))
                continue
            if what < 0.2:
                for e in await store.expire(now_ms=now_ms(), limit=20):
                    swept.extend((e.topic, e.user_id, i) for i in e.ids)
                continue
            if what < 0.25:
                if rng.random() < 0.6:
                    await store.subscribe([user], "sports")
                else:
                    await store.unsubscribe(user, "sports")
                continue
            removed.extend(await random_change(store, user, rng, up_to=what < 0.4))

    await asyncio.gather(*(task(seed) for seed in range(tasks)))
    assert len(removed) == len(set(removed))
    assert len(swept) == len(set(swept))
    await assert_recounted(stores, users, after=expiry[1])
