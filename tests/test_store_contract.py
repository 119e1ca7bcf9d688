"""The store contract on SQLite and PostgreSQL, plus what only PostgreSQL promises:
several nodes writing the same streams and changing the same inboxes at once."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.inbox_contract import InboxContract, assert_counts, concurrent_changes, walk
from tests.server import free_port
from tests.services import require_driver, require_postgres, with_query
from tests.store_contract import (
    MakeStore,
    StoreContract,
    append_all,
    now_ms,
    publish,
    read_all,
    request,
    seqs_of,
)
from tests.topic_contract import TopicContract, concurrent_topic_changes, read_topic_all
from tests.topic_counts_contract import UNDO_TOPIC_COUNTERS, TopicCountsContract, topic_history
from tidings.core.errors import ConfigError, Unavailable
from tidings.core.inbox import EVERYONE, Mark
from tidings.core.models import Counts
from tidings.store import open_store
from tidings.store.base import Store
from tidings.store.postgres.schema import MIGRATIONS
from tidings.store.sqlite.store import SQLiteStore


class TestSQLiteStore(StoreContract, InboxContract, TopicContract, TopicCountsContract):
    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[MakeStore]:
        opened: list[Store] = []

        async def make() -> Store:
            store = SQLiteStore(tmp_path / "tidings.db")
            await store.open()
            opened.append(store)
            return store

        yield make
        for store in opened:
            await store.close()

    async def test_topic_counter_migration_counts_what_was_stored_before(
        self, tmp_path: Path
    ) -> None:
        store = SQLiteStore(tmp_path / "old.db")
        await store.open()
        counts = await topic_history(store)
        await store.close()
        with sqlite3.connect(tmp_path / "old.db") as conn:
            conn.executescript(UNDO_TOPIC_COUNTERS)
        store = SQLiteStore(tmp_path / "old.db")
        await store.open()
        try:
            for user, expected in counts.items():
                await assert_counts(store, user, expected)
            await store.append(publish("news"))
            await assert_counts(
                store, "dave", Counts(*(n + 1 for n in counts["dave"].to_json().values()))
            )
        finally:
            await store.close()


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1].split("&", 1)[0]


async def admin_fetch(sql: str) -> list[Any]:
    """Run ``sql`` on the test database outside any store."""
    asyncpg = require_driver("asyncpg")
    conn = await asyncpg.connect(require_postgres())
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def admin_script(sql: str) -> None:
    """Run several statements on the test database outside any store."""
    asyncpg = require_driver("asyncpg")
    conn = await asyncpg.connect(require_postgres())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL URL naming a fresh schema, dropped afterwards."""
    base = require_postgres()
    schema = f"tidings_test_{uuid.uuid4().hex[:12]}"
    yield with_query(base, f"schema={schema}")
    await admin_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class TestPostgresStore(StoreContract, InboxContract, TopicContract, TopicCountsContract):
    @pytest.fixture(autouse=True)
    def driver(self) -> None:
        require_driver("asyncpg")

    @pytest.fixture
    def no_retries(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make a deadlock fail the test instead of passing unseen after a retry."""
        from tidings.store.postgres import pool

        monkeypatch.setattr(pool, "RETRIES", 1)

    @pytest.fixture
    async def make_store(self, pg_url: str) -> AsyncIterator[MakeStore]:
        opened: list[Store] = []

        async def make() -> Store:
            store = open_store(pg_url)
            opened.append(store)
            await store.open()
            return store

        yield make
        for store in opened:
            await store.close()

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_share_streams_without_gaps(self, make_store: MakeStore) -> None:
        """Two instances (two nodes) hammer the same user, and publish to the same
        pair of users in opposite orders, which would deadlock with careless locking."""
        nodes = [await make_store(), await make_store()]
        waves = []
        for wave in range(4):
            for node_no, node in enumerate(nodes):
                pair = ("x", "y") if node_no else ("y", "x")
                batch = [request("shared", message=f"{node_no}-{wave}-{n}") for n in range(100)]
                batch += [request(*pair) for _ in range(10)]
                waves.append(append_all(node, batch))
        results = [r for wave_results in await asyncio.gather(*waves) for r in wave_results]
        assert sorted(seqs_of(results, "shared")) == list(range(1, 801))
        for user in ("x", "y"):
            assert sorted(seqs_of(results, user)) == list(range(1, 81))
        stored = await read_all(nodes[1], "shared")
        assert [n.seq for n in stored] == list(range(1, 801))
        by_seq = {seq: r.id for r in results for user, seq in r.seqs if user == "shared"}
        assert all(by_seq[n.seq] == n.id for n in stored)
        assert await nodes[0].heads(["shared", "x", "y"]) == {"shared": 800, "x": 80, "y": 80}

    async def test_two_nodes_store_a_repeated_key_once(self, make_store: MakeStore) -> None:
        nodes = [await make_store(), await make_store()]
        for round_no in range(10):
            key = f"k{round_no}"
            results = await asyncio.gather(
                *(node.append(request("bob", key=key)) for node in nodes for _ in range(3))
            )
            assert [r.duplicate for r in results].count(False) == 1
            assert len({(r.id, r.seqs) for r in results}) == 1
        assert (await nodes[0].heads(["bob"]))["bob"] == 10

    async def test_key_past_the_window_is_taken_over_before_pruning(
        self, make_store: MakeStore, pg_url: str
    ) -> None:
        store = await make_store()
        first = await store.append(request("bob", key="k1"))
        await admin_fetch(f"UPDATE {schema_of(pg_url)}.idempotency SET created_at = 0")
        again = await store.append(request("bob", key="k1", message="another body"))
        assert not again.duplicate and again.id != first.id
        assert (await store.append(request("bob", key="k1", message="another body"))).duplicate

    async def test_concurrent_open_migrates_once(self, pg_url: str) -> None:
        stores = [open_store(pg_url) for _ in range(3)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            results = await asyncio.gather(*(s.append(request("bob")) for s in stores))
            assert sorted(seqs_of(results, "bob")) == [1, 2, 3]
        finally:
            for store in stores:
                await store.close()
        versions = await admin_fetch(f"SELECT version FROM {schema_of(pg_url)}.schema_version")
        assert [row["version"] for row in versions] == [len(MIGRATIONS)]

    async def test_inbox_migration_counts_what_was_stored_before(self, pg_url: str) -> None:
        """A database at version 1 with notifications in it: nodes starting at once
        migrate it once, and the new counters count the old notifications."""
        schema = schema_of(pg_url)
        await admin_script(
            f"CREATE SCHEMA {schema}; SET search_path = {schema}; {MIGRATIONS[0]};"
            " CREATE TABLE schema_version (version INTEGER NOT NULL);"
            " INSERT INTO schema_version VALUES (1);"
            " INSERT INTO streams VALUES ('bob', 2, 0), ('carol', 1, 0);"
            " INSERT INTO notifications VALUES"
            " ('bob', 1, '01J00000000000000000000001', NULL, 'a', NULL, 1),"
            " ('bob', 2, '01J00000000000000000000002', NULL, 'b', NULL, 2),"
            " ('carol', 1, '01J00000000000000000000001', NULL, 'c', NULL, 1)"
        )
        stores = [open_store(pg_url) for _ in range(3)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            await assert_counts(stores[0], "bob", Counts(2, 2, 2))
            await assert_counts(stores[1], "carol", Counts(1, 1, 1))
            assert (await stores[2].append(request("bob"))).seqs == (("bob", 3),)
            await assert_counts(stores[2], "bob", Counts(3, 3, 3))
            [old] = (await stores[0].read_stream("carol", after_seq=0)).items
            assert (old.message, old.tags, old.expires_at) == ("c", (), None)
        finally:
            for store in stores:
                await store.close()
        versions = await admin_fetch(f"SELECT version FROM {schema}.schema_version")
        assert [row["version"] for row in versions] == [len(MIGRATIONS)]

    async def test_topic_counter_migration_counts_what_was_stored_before(
        self, make_store: MakeStore, pg_url: str
    ) -> None:
        counts = await topic_history(await make_store())
        await admin_script(f"SET search_path = {schema_of(pg_url)}; {UNDO_TOPIC_COUNTERS}")
        store = await make_store()
        for user, expected in counts.items():
            await assert_counts(store, user, expected)
        await store.append(publish("news"))
        await assert_counts(
            store, "dave", Counts(*(n + 1 for n in counts["dave"].to_json().values()))
        )

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_mark_the_same_items_at_once(self, make_store: MakeStore) -> None:
        """Each item is changed by exactly one of the nodes' overlapping marks;
        the counters, moved by both, end exact."""
        nodes = [await make_store(), await make_store()]
        results = await append_all(nodes[0], [request("bob") for _ in range(200)])
        ids = [r.id for r in results]
        for action in ("read", "seen", "archive", "unread", "unarchive"):
            marks = [
                node.mark("bob", Mark(action, ids=tuple(ids[start : start + 60])))
                for start in range(0, 120, 20)
                for node in nodes
            ]
            marks += [node.mark("bob", Mark(action, up_to=ids[99])) for node in nodes]
            changed = [id_ for got, _ in await asyncio.gather(*marks) for id_ in got]
            assert sorted(changed) == sorted(ids[:160]), action
        await assert_counts(nodes[1], "bob", Counts(200, 200, 40))

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_change_and_sweep_the_same_inboxes(self, make_store: MakeStore) -> None:
        """Marks, deletes, appends and sweeps from two nodes at once, over users
        that appends and sweeps lock together: no deadlock, nothing removed
        twice, every count exact."""
        nodes = [await make_store(), await make_store()]
        await concurrent_changes(nodes, users=("bob", "carol", "dave"), tasks=24, steps=15)

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_sweep_at_once(self, make_store: MakeStore) -> None:
        nodes = [await make_store(), await make_store()]
        past = now_ms() - 1
        users = [f"u{n}" for n in range(20)]
        await append_all(nodes[0], [request(*users, expires_at=past) for _ in range(30)])
        swept = await asyncio.gather(
            *(node.expire(now_ms=now_ms(), limit=100) for node in nodes for _ in range(4))
        )
        while rest := await nodes[0].expire(now_ms=now_ms()):
            swept.append(rest)
        ids = [(e.user_id, i) for sweep in swept for e in sweep for i in e.ids]
        assert len(ids) == len(set(ids)) == 600
        assert all(e.counts == Counts() for sweep in swept for e in sweep)
        for user in users:
            await assert_counts(nodes[1], user, Counts())

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_publish_to_shared_topics_without_gaps(
        self, make_store: MakeStore
    ) -> None:
        """Two nodes publish to the same topics, in batches that also write the
        same personal streams, in opposite orders: topic seqs stay gapless and
        in commit order, and nothing deadlocks."""
        nodes = [await make_store(), await make_store()]
        waves = []
        for wave in range(4):
            for node_no, node in enumerate(nodes):
                names = ("a", "b") if node_no else ("b", "a")
                batch = [publish(names[n % 2], message=f"{node_no}-{wave}-{n}") for n in range(60)]
                batch += [request("x", "y") for _ in range(5)]
                batch += [publish(EVERYONE) for _ in range(5)]
                waves.append(append_all(node, batch))
        results = [r for wave_results in await asyncio.gather(*waves) for r in wave_results]
        for name, count in (("a", 240), ("b", 240), (EVERYONE, 40)):
            assert sorted(r.topic_seq for r in results if r.topic == name) == list(
                range(1, count + 1)
            )
            stored = await read_topic_all(nodes[1], name)
            by_seq = {r.topic_seq: r.id for r in results if r.topic == name}
            assert [n.seq for n in stored] == list(range(1, count + 1))
            assert all(by_seq[n.seq] == n.id for n in stored)
        assert await nodes[0].heads(["x", "y"]) == {"x": 40, "y": 40}

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_mark_the_same_topic_items_at_once(self, make_store: MakeStore) -> None:
        nodes = [await make_store(), await make_store()]
        await nodes[0].subscribe(["bob"], "news")
        results = await append_all(
            nodes[0], [publish("news" if n % 2 else EVERYONE) for n in range(200)]
        )
        ids = sorted(r.id for r in results)
        for action in ("read", "seen", "archive", "unread", "unarchive"):
            marks = [
                node.mark("bob", Mark(action, ids=tuple(ids[start : start + 60])))
                for start in range(0, 120, 20)
                for node in nodes
            ]
            marks += [node.mark("bob", Mark(action, up_to=ids[99])) for node in nodes]
            changed = [id_ for got, _ in await asyncio.gather(*marks) for id_ in got]
            assert sorted(changed) == ids[:160], action
        await assert_counts(nodes[1], "bob", Counts(200, 200, 40))
        assert len(await walk(nodes[1], "bob", limit=200)) == 200

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_change_topics_and_sweep_at_once(self, make_store: MakeStore) -> None:
        nodes = [await make_store(), await make_store()]
        await concurrent_topic_changes(nodes, users=("bob", "carol", "dave"), tasks=24, steps=15)

    @pytest.mark.usefixtures("no_retries")
    async def test_two_nodes_sweep_topics_at_once(self, make_store: MakeStore) -> None:
        nodes = [await make_store(), await make_store()]
        await nodes[0].subscribe(["bob", "carol"], "news")
        past = now_ms() - 1
        batch = [publish(f"t{n % 7}", expires_at=past) for n in range(300)]
        await append_all(nodes[0], batch)
        for n in range(0, 300, 7):  # receipts to sweep too
            await nodes[0].mark("bob", Mark("archive", ids=(batch[n].id,)))
        await append_all(nodes[0], [publish("news", expires_at=past) for _ in range(100)])
        swept = await asyncio.gather(
            *(node.expire(now_ms=now_ms(), limit=60) for node in nodes for _ in range(4))
        )
        while rest := await nodes[0].expire(now_ms=now_ms()):
            swept.append(rest)
        ids = [(e.topic, i) for sweep in swept for e in sweep for i in e.ids]
        assert len(ids) == len(set(ids)) == 400
        assert all(e.counts is None and e.user_id == "" for sweep in swept for e in sweep)
        for n in range(7):
            page = await nodes[1].read_topic(f"t{n}", after_seq=0)
            assert (page.items, page.trimmed) == ([], page.head)
        assert (await nodes[1].export("bob"))["receipts"] == []

    async def test_schemas_are_isolated(self, make_store: MakeStore, pg_url: str) -> None:
        store = await make_store()
        await store.append(request("bob"))
        other_schema = f"{schema_of(pg_url)}_b"
        other = open_store(with_query(require_postgres(), f"schema={other_schema}"))
        try:
            await other.open()
            assert await other.heads(["bob"]) == {"bob": 0}
            assert (await other.append(request("bob"))).seqs == (("bob", 1),)
        finally:
            await other.close()
            await admin_fetch(f"DROP SCHEMA IF EXISTS {other_schema} CASCADE")
        assert await store.heads(["bob"]) == {"bob": 1}

    async def test_recovers_after_the_server_drops_connections(self, pg_url: str) -> None:
        """Connections killed under the store are replaced: at most the writes in
        flight fail (as Unavailable), the next ones succeed without a restart."""
        name = schema_of(pg_url)
        store = open_store(with_query(pg_url, f"application_name={name}"))
        await store.open()
        try:
            await append_all(store, [request("bob") for _ in range(5)])
            await store.heads(["bob"])
            killed = await admin_fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE application_name = '{name}'"
            )
            assert killed
            await asyncio.sleep(0.1)
            outcomes: list[object] = []
            for _ in range(3):
                try:
                    outcomes.append((await store.append(request("bob"))).seqs[0][1])
                except Unavailable as exc:
                    outcomes.append(exc)
            stored = [seq for seq in outcomes if isinstance(seq, int)]
            assert isinstance(outcomes[-1], int), outcomes
            assert stored == list(range(6, 6 + len(stored)))
            await store.ping()
        finally:
            await store.close()

    async def test_unreachable_server_is_unavailable(self) -> None:
        store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
        with pytest.raises(Unavailable, match="cannot open PostgreSQL store"):
            await store.open()
        with pytest.raises(Unavailable):
            await store.ping()
        with pytest.raises(Unavailable):
            await store.read_stream("bob", after_seq=0)

    async def test_url_options(self) -> None:
        from tidings.store.postgres.store import PostgresStore

        store = PostgresStore.from_url(
            "postgresql://u:secret@db:5432/app?sslmode=disable&schema=tidings_a&pool_size=4"
        )
        assert (store.dsn, store.schema, store.pool_size) == (
            "postgresql://u:secret@db:5432/app?sslmode=disable",
            "tidings_a",
            4,
        )
        with pytest.raises(ConfigError, match="'Bad-Name'"):
            PostgresStore.from_url("postgresql://db/app?schema=Bad-Name")
        with pytest.raises(ConfigError, match="pool_size"):
            PostgresStore.from_url("postgresql://db/app?pool_size=many")
        hidden = PostgresStore.from_url(f"postgresql://u:secret@127.0.0.1:{free_port()}/app")
        with pytest.raises(Unavailable) as failure:
            await hidden.open()
        assert "secret" not in str(failure.value) and "u:***@" in str(failure.value)
