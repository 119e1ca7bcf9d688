"""The inbox contract: listing, filters, counts and changes, on every backend.

The tests keep a model of every item's state in plain Python and check the
store against it after each change: the counts a change returns, the counts
read afterwards, and a recount by filter must all agree with it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.store_contract import append_all, now_ms, request
from tidings.core.inbox import InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, PublishRequest
from tidings.store.base import Store

_MARKS = {
    "read": ("read", True),
    "unread": ("read", False),
    "seen": ("seen", True),
    "archive": ("archived", True),
    "unarchive": ("archived", False),
}
ACTIONS = (*_MARKS, "delete")


@dataclass
class Item:
    """The model of one inbox item."""

    id: str
    created_at: int
    tags: tuple[str, ...] = ()
    read: bool = False
    seen: bool = False
    archived: bool = False

    def matches(self, f: InboxFilter) -> bool:
        archived = {"exclude": not self.archived, "include": True, "only": self.archived}
        return (
            (f.read is None or f.read == self.read)
            and (f.seen is None or f.seen == self.seen)
            and archived[f.archived]
            and (not f.tags or not set(f.tags).isdisjoint(self.tags))
            and (f.created_after is None or self.created_at >= f.created_after)
            and (f.created_before is None or self.created_at < f.created_before)
        )


class Inbox:
    """What one user's inbox should hold, in plain Python."""

    def __init__(self, requests: Iterable[PublishRequest]) -> None:
        self.items = {r.id: Item(r.id, r.created_at, r.tags) for r in requests}

    def apply(self, action: str, ids: Iterable[str]) -> list[str]:
        """Apply a mark action (or ``delete``); returns the ids it really changed."""
        changed = []
        for id_ in ids:
            item = self.items.get(id_)
            if item is None:
                continue
            if action == "delete":
                del self.items[id_]
                changed.append(id_)
                continue
            field, value = _MARKS[action]
            if getattr(item, field) != value:
                setattr(item, field, value)
                changed.append(id_)
        return sorted(changed)

    def up_to(self, last: str) -> list[str]:
        return sorted(id_ for id_ in self.items if id_ <= last)

    def counts(self) -> Counts:
        live = [item for item in self.items.values() if not item.archived]
        return Counts(len(live), sum(not i.read for i in live), sum(not i.seen for i in live))

    def listed(self, f: InboxFilter) -> list[str]:
        return sorted((i.id for i in self.items.values() if i.matches(f)), reverse=True)


async def walk(
    store: Store,
    user_id: str,
    f: InboxFilter | None = None,
    *,
    newest_first: bool = True,
    limit: int = 7,
) -> list[str]:
    """Every id the inbox lists for ``f``, page by page."""
    ids: list[str] = []
    after = None
    while True:
        query = InboxQuery(f or InboxFilter(), newest_first=newest_first, after=after, limit=limit)
        items, more = await store.list_inbox(user_id, query)
        ids += [item.notification.id for item in items]
        if not more:
            return ids
        after = ids[-1]


async def recount(store: Store, user_id: str) -> Counts:
    """The counts by filter, from the items themselves rather than the counters
    (a lower bound on the creation time makes a filter the counters do not keep)."""
    found = await store.count_filters(
        user_id,
        {
            "total": InboxFilter(created_after=0),
            "unread": InboxFilter(read=False, created_after=0),
            "unseen": InboxFilter(seen=False, created_after=0),
        },
    )
    return Counts(found["total"], found["unread"], found["unseen"])


async def change(store: Store, user_id: str, action: str, ids: Sequence[str]) -> Any:
    if action == "delete":
        return await store.delete(user_id, ids)
    return await store.mark(user_id, Mark(action, ids=tuple(ids)))


async def assert_counts(store: Store, user_id: str, expected: Counts) -> None:
    counts = await store.counts(user_id)
    assert counts == expected
    assert all(type(n) is int for n in counts.to_json().values()), counts
    assert await recount(store, user_id) == expected


class InboxContract:
    async def test_inbox_lists_by_id_in_keyset_pages(self, store: Store) -> None:
        results = await append_all(store, [request("bob", message=f"m{n}") for n in range(21)])
        await store.append(request("carol"))
        ids = [r.id for r in results]
        pages = []
        after = None
        for _ in range(3):
            query = InboxQuery(InboxFilter(), after=after, limit=7)
            items, more = await store.list_inbox("bob", query)
            pages.append(([i.notification.id for i in items], more))
            after = items[-1].notification.id
            await store.append(request("bob", message="arrived between pages"))
        assert pages == [
            (sorted(ids, reverse=True)[:7], True),
            (sorted(ids, reverse=True)[7:14], True),
            (sorted(ids, reverse=True)[14:], False),
        ]
        oldest = await walk(store, "bob", newest_first=False, limit=5)
        assert oldest[:21] == sorted(ids) and len(oldest) == 24
        [first], _ = await store.list_inbox("bob", InboxQuery(InboxFilter(), limit=1))
        assert first.notification.message == "arrived between pages"
        assert (first.read_at, first.seen_at, first.archived_at) == (None, None, None)
        assert await store.list_inbox("nobody", InboxQuery(InboxFilter())) == ([], False)
        assert await store.counts("nobody") == Counts()

    async def test_tags_and_expiry_round_trip(self, store: Store) -> None:
        later = now_ms() + 3_600_000
        sent = request("bob", "carol", tags=("billing", "ünï"), expires_at=later)
        result = await store.append(sent)
        for user in ("bob", "carol"):
            [item] = (await store.read_stream(user, after_seq=0)).items
            assert (item.tags, item.expires_at) == (("billing", "ünï"), later)
            assert item in result.stored
            [listed], _ = await store.list_inbox(user, InboxQuery(InboxFilter()))
            assert listed.notification == item

    async def test_every_filter_lists_and_counts_what_it_should(self, store: Store) -> None:
        base = now_ms() - 100_000
        tag_sets = [("billing",), ("news",), (), ("billing", "news")]
        sent = [request("bob", created_at=base + n * 1000, tags=tag_sets[n % 4]) for n in range(16)]
        for r in sent:
            await store.append(r)
        await store.append(request("carol", tags=("billing",)))
        ids = [r.id for r in sent]
        inbox = Inbox(sent)
        for action, chosen in [
            ("read", ids[:8]),
            ("seen", ids[5:11]),
            ("archive", [ids[6], ids[12], ids[13]]),
        ]:
            await store.mark("bob", Mark(action, ids=tuple(chosen)))
            inbox.apply(action, chosen)
        filters = {
            "all": InboxFilter(),
            "read": InboxFilter(read=True),
            "unread": InboxFilter(read=False),
            "seen": InboxFilter(seen=True),
            "unseen": InboxFilter(seen=False),
            "with archived": InboxFilter(archived="include"),
            "archived": InboxFilter(archived="only"),
            "billing": InboxFilter(tags=("billing",)),
            "any of two": InboxFilter(tags=("news", "billing"), archived="include"),
            "unknown tag": InboxFilter(tags=("nope",)),
            "after": InboxFilter(created_after=base + 5000),
            "before": InboxFilter(created_before=base + 5000),
            "between": InboxFilter(created_after=base + 3000, created_before=base + 9000),
            "mixed": InboxFilter(read=False, seen=False, tags=("news",), archived="include"),
            "archived read": InboxFilter(read=True, archived="only"),
        }
        counted = await store.count_filters("bob", filters)
        for name, f in filters.items():
            expected = inbox.listed(f)
            assert await walk(store, "bob", f, limit=3) == expected, name
            assert await walk(store, "bob", f, newest_first=False) == expected[::-1], name
            assert counted[name] == len(expected), name
        assert counted["all"] == 13 and counted["unknown tag"] == 0
        assert await store.count_filters("bob", {}) == {}
        assert await store.count_filters("nobody", {"all": InboxFilter()}) == {"all": 0}

    async def test_counts_follow_every_change_exactly(self, store: Store) -> None:
        sent = [request("bob", message=f"m{n}") for n in range(30)]
        for r in sent:
            await store.append(r)
        carol = await store.append(request("carol"))
        inbox = Inbox(sent)
        ids = [r.id for r in sent]
        rng = random.Random(7)
        for step in range(80):
            action = rng.choice(ACTIONS if step % 8 == 7 else ACTIONS[:-1])
            chosen = rng.sample(ids, rng.randint(1, 8))
            chosen += [carol.id, chosen[0]]  # another user's item; a repeat
            changed, counts = await change(store, "bob", action, chosen)
            assert sorted(changed) == inbox.apply(action, chosen), (step, action)
            assert counts == inbox.counts(), (step, action)
            await assert_counts(store, "bob", inbox.counts())
        assert await walk(store, "bob", InboxFilter(archived="include")) == inbox.listed(
            InboxFilter(archived="include")
        )
        await assert_counts(store, "carol", Counts(1, 1, 1))
        assert await store.mark("nobody", Mark("read", ids=(carol.id,))) == ([], Counts())

    async def test_mark_up_to_an_id(self, store: Store) -> None:
        sent = [request("bob" if n % 3 else "carol") for n in range(15)]
        for r in sent:
            await store.append(r)
        inbox = Inbox(r for r in sent if r.recipients == ("bob",))
        ids = sorted(inbox.items)
        steps = [
            ("read", ids[3]),
            ("read", ids[5]),
            ("archive", ids[1]),
            ("seen", ids[-1]),
            ("read", ids[-1]),
            ("unread", ids[-1]),
            ("unarchive", ids[-1]),
            ("read", "0" * 26),
        ]
        for action, last in steps:
            changed, counts = await store.mark("bob", Mark(action, up_to=last))
            assert sorted(changed) == inbox.apply(action, inbox.up_to(last)), (action, last)
            assert counts == inbox.counts()
            await assert_counts(store, "bob", inbox.counts())
        await assert_counts(store, "carol", Counts(5, 5, 5))

    async def test_expired_items_are_invisible_then_swept(self, store: Store) -> None:
        start = now_ms()
        keep = request("bob", message="keep")
        later = request("bob", message="later", expires_at=start + 3_600_000)
        soon = [request("bob", message=f"soon{n}", expires_at=start + 1000) for n in range(4)]
        past = request("bob", message="past", expires_at=start - 1)
        for r in [keep, later, *soon, past, request("carol", expires_at=start + 1000)]:
            await store.append(r)
        inbox = Inbox([keep, later, *soon])
        assert past.id not in await walk(store, "bob", InboxFilter(archived="include"))
        for action, item in [("read", soon[0]), ("archive", soon[1]), ("seen", soon[2])]:
            await store.mark("bob", Mark(action, ids=(item.id,)))
            inbox.apply(action, [item.id])
        await assert_counts(store, "bob", inbox.counts())
        assert [n.message for n in (await store.read_stream("bob", after_seq=0)).items] == [
            "keep",
            "later",
            "soon0",
            "soon1",
            "soon2",
            "soon3",
        ]
        assert now_ms() < start + 1000, "too slow to check before expiry"
        await asyncio.sleep((start + 1100 - now_ms()) / 1000)

        # Expired, not swept: gone from every read, and from the counts.
        everything = InboxFilter(archived="include")
        await assert_counts(store, "bob", Counts(2, 2, 2))
        assert await walk(store, "bob", everything) == sorted([keep.id, later.id], reverse=True)
        assert await store.count_filters("bob", {"archived": InboxFilter(archived="only")}) == {
            "archived": 0
        }
        page = await store.read_stream("bob", after_seq=0)
        assert ([n.message for n in page.items], page.head, page.trimmed) == (
            ["keep", "later"],
            7,
            0,
        )
        history = await store.history("bob", after_seq=2, before_seq=None, limit=10)
        assert (history.items, history.head) == ([], 7)
        await assert_counts(store, "carol", Counts())

        swept = await store.expire(now_ms=now_ms())
        by_user = {e.user_id: e for e in swept}
        assert set(by_user) == {"bob", "carol"}
        assert by_user["bob"].ids[0] == past.id  # earliest expiry first
        assert sorted(by_user["bob"].ids) == sorted([past.id, *(r.id for r in soon)])
        assert by_user["bob"].counts == Counts(2, 2, 2)
        assert by_user["carol"].counts == Counts()
        page = await store.read_stream("bob", after_seq=0)
        assert (page.head, page.trimmed) == (7, 7)
        await assert_counts(store, "bob", Counts(2, 2, 2))
        assert await store.expire(now_ms=now_ms()) == []
        assert await store.mark("bob", Mark("unarchive", ids=(soon[1].id,))) == (
            [],
            Counts(2, 2, 2),
        )
        exported = await store.export("bob")
        assert [n["message"] for n in exported["notifications"]] == ["keep", "later"]

    async def test_expire_takes_at_most_limit(self, store: Store) -> None:
        start = now_ms()
        for n in range(5):
            await store.append(request(f"u{n % 2}", expires_at=start - 100 + n))
        first = await store.expire(now_ms=start, limit=3)
        assert sum(len(e.ids) for e in first) == 3
        second = await store.expire(now_ms=start, limit=3)
        assert sum(len(e.ids) for e in second) == 2
        assert await store.expire(now_ms=start, limit=3) == []
        assert await store.heads(["u0", "u1"]) == {"u0": 3, "u1": 2}

    async def test_trim_keeps_the_newest_and_moves_the_counts(self, store: Store) -> None:
        requests = [request("bob", message=f"n{n}") for n in range(1, 13)]
        for r in [*requests, request("carol")]:
            await store.append(r)  # one by one: seq n is n{n}
        inbox = Inbox(requests)
        for action, item in [
            ("read", requests[0]),
            ("archive", requests[1]),
            ("seen", requests[8]),
        ]:
            await store.mark("bob", Mark(action, ids=(item.id,)))
            inbox.apply(action, [item.id])
        # At most 3 a call: the oldest first, and the rest at the next call.
        first = await store.trim(["bob", "carol", "nobody"], keep=5, now_ms=now_ms(), limit=3)
        assert [(e.user_id, e.ids) for e in first] == [("bob", tuple(r.id for r in requests[:3]))]
        rest = await store.trim(["bob", "carol"], keep=5, now_ms=now_ms(), limit=3)
        second = await store.trim(["bob"], keep=5, now_ms=now_ms(), limit=3)
        assert [e.ids for e in rest + second] == [
            tuple(r.id for r in requests[3:6]),
            (requests[6].id,),
        ]
        assert await store.trim(["bob"], keep=5, now_ms=now_ms()) == []
        inbox.apply("delete", [r.id for r in requests[:7]])
        await assert_counts(store, "bob", inbox.counts())
        assert second[-1].counts == inbox.counts()
        page = await store.read_stream("bob", after_seq=0)
        assert [n.message for n in page.items] == [f"n{n}" for n in range(8, 13)]
        assert page.trimmed == 7 and page.head == 12
        assert [n.seq for n in (await store.read_stream("carol", after_seq=0)).items] == [1]

    async def test_export_then_erase_keeps_the_head(self, store: Store) -> None:
        first = await store.append(
            request("bob", message="one", sender="bob", key="k1", data={"a": 1}, tags=("x",))
        )
        await store.append(request("bob", message="two"))
        await store.append(request("carol"))
        await store.mark("bob", Mark("read", ids=(first.id,)))
        exported = await store.export("bob")
        assert (exported["userId"], exported["head"]) == ("bob", 2)
        assert exported["counts"] == {"total": 2, "unread": 1, "unseen": 2}
        one, two = exported["notifications"]
        assert (one["notificationId"], one["message"], one["data"], one["tags"]) == (
            first.id,
            "one",
            {"a": 1},
            ["x"],
        )
        assert one["readAt"] is not None and two["readAt"] is None
        assert isinstance(exported["exportedAt"], str)

        assert await store.erase("bob") == 2
        after = await store.export("bob")
        assert (after["notifications"], after["head"], after["counts"]) == (
            [],
            2,
            {"total": 0, "unread": 0, "unseen": 0},
        )
        await assert_counts(store, "bob", Counts())
        assert await walk(store, "bob", InboxFilter(archived="include")) == []
        page = await store.read_stream("bob", after_seq=0)
        assert (page.items, page.head, page.trimmed) == ([], 2, 2)
        # The seq goes on from the head; bob's idempotency keys went too.
        again = await store.append(request("bob", message="one", sender="bob", key="k1"))
        assert not again.duplicate and again.seqs == (("bob", 3),)
        await assert_counts(store, "bob", Counts(1, 1, 1))
        await assert_counts(store, "carol", Counts(1, 1, 1))
        assert await store.erase("nobody") == 0
        assert (await store.export("nobody"))["notifications"] == []

    async def test_concurrent_marks_count_each_change_once(self, store: Store) -> None:
        """Many tasks mark overlapping items at once: each item is reported as
        changed by exactly one of them, and the counters end exact."""
        results = await append_all(store, [request("bob") for _ in range(120)])
        ids = [r.id for r in results]
        rng = random.Random(3)
        chunks = [rng.sample(ids, 20) for _ in range(12)]
        touched = set().union(*chunks)
        for action in ("read", "archive", "unread"):
            outcomes = await asyncio.gather(
                *(store.mark("bob", Mark(action, ids=tuple(chunk))) for chunk in chunks)
            )
            changed = [id_ for got, _ in outcomes for id_ in got]
            assert sorted(changed) == sorted(touched)
        left = len(ids) - len(touched)
        await assert_counts(store, "bob", Counts(left, left, left))

    async def test_concurrent_changes_and_appends_leave_exact_counts(self, store: Store) -> None:
        await concurrent_changes([store], users=("bob", "carol"), tasks=16, steps=12)


async def concurrent_changes(
    stores: Sequence[Store], *, users: Sequence[str], tasks: int, steps: int
) -> None:
    """Random marks, up-to marks, deletes, appends and sweeps from many tasks on
    every store (node) at once; then every count must equal a recount, and no
    item may have been deleted or swept twice."""
    start = now_ms()
    expiry = {0: start - 1, 1: start + 200}  # some expired already, some during the run
    for user in users:
        await append_all(
            stores[0], [request(user, expires_at=expiry.get(n % 10)) for n in range(100)]
        )
    removed: list[tuple[str, str]] = []

    async def task(seed: int) -> None:
        rng = random.Random(seed)
        store = stores[seed % len(stores)]
        for _ in range(steps):
            user = rng.choice(users)
            what = rng.random()
            if what < 0.1:
                await store.append(request(*rng.sample(users, 2)))
                continue
            if what < 0.15:
                swept = await store.expire(now_ms=now_ms())
                removed.extend((e.user_id, i) for e in swept for i in e.ids)
                continue
            removed.extend(await random_change(store, user, rng, up_to=what < 0.3))

    await asyncio.gather(*(task(seed) for seed in range(tasks)))
    assert len(removed) == len(set(removed))
    await assert_recounted(stores, users, after=expiry[1])


async def random_change(
    store: Store, user: str, rng: random.Random, *, up_to: bool
) -> list[tuple[str, str]]:
    """One random change of items the user lists now: a mark up to one of them
    (``up_to``), else a mark or delete of a few; returns what was deleted."""
    listed = await walk(store, user, InboxFilter(archived="include"), limit=200)
    if not listed:
        return []
    if up_to:
        await store.mark(user, Mark(rng.choice(list(_MARKS)), up_to=rng.choice(listed)))
        return []
    action = rng.choice(ACTIONS)
    chosen = rng.sample(listed, min(len(listed), rng.randint(1, 20)))
    changed, _ = await change(store, user, action, chosen)
    return [(user, i) for i in changed] if action == "delete" else []


async def assert_recounted(stores: Sequence[Store], users: Sequence[str], *, after: int) -> None:
    """Every user's counts equal a recount on every store, once past ``after``
    (the last expiry), so that nothing expires between a count and its recount."""
    await asyncio.sleep(max(0, after + 50 - now_ms()) / 1000)
    for user in users:
        for store in stores:
            assert await store.counts(user) == await recount(store, user), user


# -- topics ---------------------------------------------------------------------
