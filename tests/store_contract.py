"""The store contract, written once and run on every backend.

A backend's test class inherits ``StoreContract`` (here: streams, seqs,
idempotency), ``InboxContract`` (``tests.inbox_contract``), ``TopicContract``
(``tests.topic_contract``) and ``TopicCountsContract``
(``tests.topic_counts_contract``), and provides one fixture, ``make_store``:
an async factory returning a new, opened store on the same empty database
each time it is called (a second call is a second node), and closing them
all afterwards. The guarantees checked are the ones documented in
``tidings.store.base``. The helpers here build requests as the node does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from tidings.core.errors import BadRequest, IdempotencyConflict
from tidings.core.ids import new_id
from tidings.core.models import JSONObject, PublishRequest, PublishResult
from tidings.core.revocation import TOKEN, USER, Revocation
from tidings.store.base import IDEMPOTENCY_TTL_MS, PAGE_LIMIT, Store

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

    async def test_revocations_are_kept_and_a_later_one_moves_the_moment_on(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store()
        assert await store.revocations() == []
        await store.revoke(Revocation(USER, "alice", 2_000))
        await store.revoke(Revocation(USER, "alice", 1_000))  # never back
        await store.revoke(Revocation(TOKEN, "jti-1", 1_500))
        await store.revoke(Revocation(USER, "bob", 3_000))
        await store.revoke(Revocation(USER, "bob", 4_000))
        other_node = await make_store()
        kept = sorted(await other_node.revocations(), key=lambda r: (r.kind, r.subject))
        assert kept == [
            Revocation(TOKEN, "jti-1", 1_500),
            Revocation(USER, "alice", 2_000),
            Revocation(USER, "bob", 4_000),
        ]

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
