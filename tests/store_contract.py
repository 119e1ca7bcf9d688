"""The store contract, written once and run on every backend.

A backend's test class inherits ``StoreContract``, ``InboxContract`` and
``TopicContract`` and provides one fixture, ``make_store``: an async factory
returning a new, opened store on the same empty database each time it is
called (a second call is a second node), and closing them all afterwards. The
guarantees checked are the ones documented in ``tidings.store.base``.

The inbox tests keep a model of every item's state in plain Python and check
the store against it after each change: the counts a change returns, the
counts read afterwards, and a recount by filter must all agree with it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tidings.core.errors import BadRequest, IdempotencyConflict
from tidings.core.ids import new_id
from tidings.core.inbox import EVERYONE, InboxFilter, InboxQuery, Mark
from tidings.core.models import Counts, JSONObject, PublishRequest, PublishResult
from tidings.store.base import IDEMPOTENCY_TTL_MS, PAGE_LIMIT, Expired, Store

MakeStore = Callable[[], Awaitable[Store]]

_counter = itertools.count()


def request(
    *recipients: str,
    message: str = "hi",
    sender: str | None = "alice",
    data: JSONObject | None = None,
    key: str | None = None,
    fingerprint: str | None = None,
    tags: tuple[str, ...] = (),
    expires_at: int | None = None,
    created_at: int | None = None,
    topic: str | None = None,
) -> PublishRequest:
    """A publish request as the node builds one; the fingerprint follows the body
    unless given, so a retry with the same body is a true retry. With ``topic``
    (and no recipients) it publishes to that topic."""
    return PublishRequest(
        id=new_id(),
        recipients=recipients,
        message=message,
        created_at=created_at if created_at is not None else now_ms() + next(_counter),
        sender=sender,
        data=data,
        idempotency_key=key,
        fingerprint=(
            fingerprint if fingerprint is not None else f"{recipients}{topic}{message}{data}"
        ),
        tags=tags,
        expires_at=expires_at,
        topic=topic,
    )


def publish(topic: str, **fields: Any) -> PublishRequest:
    """A publish request to ``topic``."""
    return request(topic=topic, **fields)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def append_all(store: Store, requests: Sequence[PublishRequest]) -> list[PublishResult]:
    """Append concurrently, as many senders would: the store groups them."""
    return list(await asyncio.gather(*(store.append(r) for r in requests)))


async def read_all(store: Store, user_id: str) -> list[Any]:
    items: list[Any] = []
    after = 0
    while True:
        page = await store.read_stream(user_id, after_seq=after)
        items.extend(page.items)
        if not page.items:
            return items
        after = page.items[-1].seq


def seqs_of(results: Sequence[PublishResult], user_id: str) -> list[int]:
    return [seq for result in results for user, seq in result.seqs if user == user_id]


class StoreContract:
    @pytest.fixture
    async def store(self, make_store: MakeStore) -> Store:
        return await make_store()

    async def test_seqs_count_from_one_per_user(self, store: Store) -> None:
        results = [
            await store.append(request(user, message=f"{user}-{n}"))
            for n, user in enumerate(["bob", "carol", "bob", "bob", "carol"])
        ]
        assert [r.seqs for r in results] == [
            (("bob", 1),),
            (("carol", 1),),
            (("bob", 2),),
            (("bob", 3),),
            (("carol", 2),),
        ]
        assert all(not r.duplicate and len(r.stored) == 1 for r in results)
        page = await store.read_stream("bob", after_seq=0)
        assert [(n.seq, n.message) for n in page.items] == [
            (1, "bob-0"),
            (2, "bob-2"),
            (3, "bob-3"),
        ]
        assert (page.head, page.trimmed) == (3, 0)
        assert page.items == [r.stored[0] for r in results if r.seqs[0][0] == "bob"]

    async def test_fields_round_trip(self, store: Store) -> None:
        data = {"n": 1, "f": 0.5, "deep": {"list": [1, "two", None, True]}, "é": "ünïcødé ✓"}
        sent = request("bob", message="héllo\nwörld 🎉", data=data)
        bare = request("bob", sender=None)
        await store.append(sent)
        await store.append(bare)
        first, second = (await store.read_stream("bob", after_seq=0)).items
        assert (first.id, first.user_id, first.message, first.sender, first.data) == (
            sent.id,
            "bob",
            sent.message,
            "alice",
            data,
        )
        assert first.created_at == sent.created_at
        assert (second.sender, second.data) == (None, None)

    async def test_concurrent_appends_are_gapless(self, store: Store) -> None:
        results = await append_all(store, [request("bob", message=str(n)) for n in range(300)])
        assert sorted(seqs_of(results, "bob")) == list(range(1, 301))
        stored = await read_all(store, "bob")
        assert [n.seq for n in stored] == list(range(1, 301))
        by_seq = {seq: r.id for r in results for _, seq in r.seqs}
        assert all(by_seq[n.seq] == n.id for n in stored)

    async def test_multi_recipient_publish_is_one_item_per_recipient(self, store: Store) -> None:
        await append_all(store, [request("bob"), request("bob")])
        result = await store.append(request("bob", "carol", "dave"))
        assert dict(result.seqs) == {"bob": 3, "carol": 1, "dave": 1}
        assert {n.user_id: n.seq for n in result.stored} == dict(result.seqs)
        for user, seq in result.seqs:
            [item] = (await store.read_stream(user, after_seq=seq - 1)).items
            assert (item.id, item.seq) == (result.id, seq)

    async def test_failed_request_stores_for_no_recipient(self, store: Store) -> None:
        await store.append(request("bob", key="k1"))
        with pytest.raises(IdempotencyConflict):
            await store.append(request("carol", "dave", "bob", key="k1"))
        assert await store.heads(["bob", "carol", "dave"]) == {"bob": 1, "carol": 0, "dave": 0}

    async def test_idempotent_repeat_returns_first_result(self, store: Store) -> None:
        first = await store.append(request("bob", "carol", key="k1"))
        again = await store.append(request("bob", "carol", key="k1"))
        assert again.duplicate and not first.duplicate
        assert (again.id, again.seqs, again.created_at) == (first.id, first.seqs, first.created_at)
        assert again.stored == ()
        assert await store.heads(["bob", "carol"]) == {"bob": 1, "carol": 1}

    async def test_idempotency_key_is_scoped_to_sender(self, store: Store) -> None:
        mine = await store.append(request("bob", key="k1", sender="alice"))
        theirs = await store.append(request("bob", key="k1", sender="zoe"))
        anonymous = await store.append(request("bob", key="k1", sender=None))
        assert not theirs.duplicate and not anonymous.duplicate
        assert [mine.seqs, theirs.seqs, anonymous.seqs] == [
            (("bob", 1),),
            (("bob", 2),),
            (("bob", 3),),
        ]

    async def test_concurrent_repeats_store_once(self, store: Store) -> None:
        results = await append_all(store, [request("bob", key="k1") for _ in range(20)])
        assert [r.duplicate for r in results].count(False) == 1
        assert len({(r.id, r.seqs) for r in results}) == 1
        assert (await store.heads(["bob"]))["bob"] == 1

    async def test_reused_key_with_other_body_conflicts(self, store: Store) -> None:
        await store.append(request("bob", key="k1", message="one"))
        with pytest.raises(IdempotencyConflict):
            await store.append(request("bob", key="k1", message="two"))
        outcomes = await asyncio.gather(
            store.append(request("carol", key="k2", message="one")),
            store.append(request("carol", key="k2", message="two")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], PublishResult)
        assert isinstance(outcomes[1], IdempotencyConflict)
        assert await store.heads(["bob", "carol"]) == {"bob": 1, "carol": 1}

    async def test_prune_forgets_keys_past_the_window(self, store: Store) -> None:
        first = await store.append(request("bob", key="k1"))
        now = time.time_ns() // 1_000_000
        assert await store.prune(now_ms=now) == 0
        assert await store.prune(now_ms=now + IDEMPOTENCY_TTL_MS + 60_000) == 1
        again = await store.append(request("bob", key="k1"))
        assert not again.duplicate and again.id != first.id
        assert again.seqs == (("bob", 2),)

    async def test_read_stream_pages(self, store: Store) -> None:
        await append_all(store, [request("bob", message=str(n)) for n in range(25)])
        await store.append(request("carol"))
        pages = [await store.read_stream("bob", after_seq=a, limit=10) for a in (0, 10, 20, 25)]
        assert [[n.seq for n in page.items] for page in pages] == [
            list(range(1, 11)),
            list(range(11, 21)),
            list(range(21, 26)),
            [],
        ]
        assert {page.head for page in pages} == {25}
        assert all(n.user_id == "bob" for page in pages for n in page.items)
        unknown = await store.read_stream("nobody", after_seq=0)
        assert (unknown.items, unknown.head, unknown.trimmed) == ([], 0, 0)

    async def test_page_is_capped(self, store: Store) -> None:
        await append_all(store, [request("bob") for _ in range(PAGE_LIMIT + 5)])
        page = await store.read_stream("bob", after_seq=0, limit=PAGE_LIMIT * 5)
        assert len(page.items) == PAGE_LIMIT and page.head == PAGE_LIMIT + 5

    async def test_heads(self, store: Store) -> None:
        await append_all(store, [request("bob"), request("bob", "carol")])
        heads = await store.heads(["bob", "carol", "nobody", "bob"])
        assert heads == {"bob": 2, "carol": 1, "nobody": 0}
        assert await store.heads([]) == {}
        many = [f"user-{n}" for n in range(2500)]
        assert set((await store.heads([*many, "bob"])).values()) == {0, 2}

    async def test_unstorable_request_fails_alone(self, store: Store) -> None:
        """A backend may refuse text it cannot keep (PostgreSQL: NUL), but never by
        failing the other requests that share its transaction."""
        odd = request("bob", message="nul\x00inside")
        outcomes = await asyncio.gather(
            *(store.append(r) for r in [request("bob"), odd, request("carol")]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], PublishResult) and isinstance(outcomes[2], PublishResult)
        if isinstance(outcomes[1], BaseException):
            assert isinstance(outcomes[1], BadRequest)
            assert await store.heads(["bob"]) == {"bob": 1}
        else:
            [item] = [n for n in await read_all(store, "bob") if n.id == odd.id]
            assert item.message == odd.message

    async def test_later_instance_continues_streams(self, make_store: MakeStore) -> None:
        first = await make_store()
        await first.append(request("bob", key="k1"))
        second = await make_store()
        assert (await second.append(request("bob"))).seqs == (("bob", 2),)
        assert (await second.append(request("bob", key="k1"))).duplicate
        assert (await second.heads(["bob"]))["bob"] == 2

    async def test_ping(self, store: Store) -> None:
        await store.ping()


# -- the inbox ------------------------------------------------------------------

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
            listed = await walk(store, user, InboxFilter(archived="include"), limit=200)
            if not listed:
                continue
            if what < 0.3:
                action = rng.choice(list(_MARKS))
                await store.mark(user, Mark(action, up_to=rng.choice(listed)))
                continue
            action = rng.choice(ACTIONS)
            chosen = rng.sample(listed, min(len(listed), rng.randint(1, 20)))
            changed, _ = await change(store, user, action, chosen)
            if action == "delete":
                removed.extend((user, i) for i in changed)

    await asyncio.gather(*(task(seed) for seed in range(tasks)))
    assert len(removed) == len(set(removed))
    # Past every expiry, so that nothing expires between a count and its recount.
    await asyncio.sleep(max(0, expiry[1] + 50 - now_ms()) / 1000)
    for user in users:
        for store in stores:
            assert await store.counts(user) == await recount(store, user), user


# -- topics ---------------------------------------------------------------------


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
            listed = await walk(store, user, InboxFilter(archived="include"), limit=200)
            if not listed:
                continue
            if what < 0.4:
                action = rng.choice(list(_MARKS))
                await store.mark(user, Mark(action, up_to=rng.choice(listed)))
                continue
            action = rng.choice(ACTIONS)
            chosen = rng.sample(listed, min(len(listed), rng.randint(1, 20)))
            changed, _ = await change(store, user, action, chosen)
            if action == "delete":
                removed.extend((user, i) for i in changed)

    await asyncio.gather(*(task(seed) for seed in range(tasks)))
    assert len(removed) == len(set(removed))
    assert len(swept) == len(set(swept))
    await asyncio.sleep(max(0, expiry[1] + 50 - now_ms()) / 1000)
    for user in users:
        for store in stores:
            assert await store.counts(user) == await recount(store, user), user
