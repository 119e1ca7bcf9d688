"""The Python SDK: the cursor without I/O, then the client and publisher on real servers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import ServerProcess
from tidings.client import (
    AsyncPublisher,
    ClientCursor,
    Publisher,
    RequestFailed,
    ServerUnreachable,
    TidingsClient,
    Unauthorized,
)
from tidings.client.base import backoff_delay, server_urls
from tidings.client.cursor import DELIVER, DROP, Gap


def note(seq: int, *, topic: str | None = None, nid: str | None = None) -> dict[str, Any]:
    return {
        "type": "notification",
        "notificationId": nid or f"id-{topic or ''}-{seq:04}",
        "seq": seq,
        "topic": topic,
    }


# -- the cursor: no server, no event loop ------------------------------------------


def test_latest_discards_the_first_replay_and_starts_at_the_head() -> None:
    cursor = ClientCursor()
    assert cursor.query() == {"since": "0"}
    assert cursor.classify(note(1), replay=True) is DROP
    assert cursor.caught_up({"type": "caughtUp", "seq": 7, "complete": False}) is False
    assert cursor.position() == {"seq": 7, "topics": {}}
    assert cursor.classify(note(8), replay=False) is DELIVER
    assert cursor.query() == {"since": "7"}


def test_since_replays_in_order_and_drops_what_was_delivered() -> None:
    cursor = ClientCursor(since=0)
    for seq in (1, 2, 4):  # 3 was deleted: a hole in a replay is not a gap
        assert cursor.classify(note(seq), replay=True) is DELIVER
        assert cursor.deliver(note(seq))
    assert cursor.classify(note(2), replay=True) is DROP
    assert cursor.caught_up({"type": "caughtUp", "seq": 6, "complete": True}) is False
    assert cursor.positions[""] == 6  # holes at the end are skipped too
    assert cursor.classify(note(7), replay=False) is DELIVER


def test_a_live_jump_is_a_gap_and_a_known_id_is_not_delivered_twice() -> None:
    cursor = ClientCursor(since=3)
    assert cursor.classify(note(6), replay=False) == Gap("", 3, 6)
    assert cursor.deliver(note(4, nid="a"))
    assert not cursor.deliver(note(5, nid="a"))  # same notificationId
    assert cursor.positions[""] == 5


def test_complete_false_asks_for_a_refetch_unless_starting_at_the_head() -> None:
    cursor = ClientCursor(since=0)
    cursor.query()
    assert cursor.caught_up({"type": "caughtUp", "seq": 9, "complete": False}) is True
    fresh = ClientCursor()
    fresh.query()
    assert fresh.caught_up({"type": "caughtUp", "seq": 9, "complete": False}) is False


def test_topics_have_their_own_positions_and_resume_query() -> None:
    cursor = ClientCursor(since=5, topics={"news": 2, "everyone": None})
    assert cursor.query() == {"since": "5", "topics": "everyone:0,news:2"}
    assert cursor.classify(note(1, topic="everyone"), replay=True) is DROP
    assert cursor.classify(note(3, topic="news"), replay=True) is DELIVER
    cursor.deliver(note(3, topic="news"))
    cursor.caught_up({"type": "caughtUp", "seq": 5, "topics": {"news": 3, "everyone": 12}})
    assert cursor.position() == {"seq": 5, "topics": {"everyone": 12, "news": 3}}
    assert cursor.classify(note(15, topic="everyone"), replay=False) == Gap("everyone", 12, 15)
    restored = ClientCursor()
    restored.restore(cursor.position())
    assert restored.query() == {"since": "5", "topics": "everyone:12,news:3"}


def test_backoff_and_urls() -> None:
    rand = random.Random(1)
    delays = [backoff_delay(n, min_delay=0.5, max_delay=30, rand=rand) for n in range(12)]
    assert all(0 <= d < min(30, 0.5 * 2**n) for n, d in enumerate(delays))
    urls = server_urls("https://example.com/notify/ws")
    assert (urls.http, urls.ws) == ("https://example.com/notify", "wss://example.com/notify/ws")
    with pytest.raises(ValueError, match="ftp://x"):
        server_urls("ftp://x")


# -- against real servers -------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", "--user-send", "any").start()
    yield proc
    proc.stop()


async def take(stream: AsyncIterator[dict[str, Any]], n: int, timeout: float = 10) -> list[Any]:
    async def run() -> list[Any]:
        return [await anext(stream) for _ in range(n)]

    return await asyncio.wait_for(run(), timeout)


async def test_send_returns_the_ack_and_the_recipient_iterates_it(server: ServerProcess) -> None:
    states: list[str] = []
    async with (
        TidingsClient(server.url, token=server.token("bob"), on_state=states.append) as bob,
        TidingsClient(server.url, token=server.token("alice")) as alice,
    ):
        stream = bob.notifications()
        ack = await alice.send("bob", "hi", {"order": 42})
        assert ack["type"] == "ack" and ack["seq"] == 1
        [got] = await take(stream, 1)
        assert got["notificationId"] == ack["notificationId"]
        assert (got["sender"], got["message"], got["data"]) == ("alice", "hi", {"order": 42})
        with pytest.raises(RequestFailed) as info:
            await alice.send("", "nobody")
        assert info.value.code == "bad_request"
    assert states == ["connecting", "connected", "closed"]


async def test_resume_across_a_restart_with_a_send_queued_while_down(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--user-send", "any").start()
    bob = TidingsClient(
        server.url, token_factory=lambda: server.token("bob"), min_delay=0.05, max_delay=0.5
    )
    alice = TidingsClient(server.url, token=server.token("alice"), min_delay=0.05, max_delay=0.5)
    try:
        await bob.connect()
        stream = bob.notifications()
        await alice.send("bob", "before")
        assert [n["message"] for n in await take(stream, 1)] == ["before"]
        server.stop()
        queued = asyncio.create_task(alice.send("bob", "queued while down"))
        # Stored while bob's server is down, by another node on the same data directory.
        other = ServerProcess(tmp_path / "data").start()
        try:
            with Publisher(other.url, other.token("ops", admin=True)) as publisher:
                for i in range(3):
                    publisher.publish("bob", f"down {i}")
        finally:
            other.stop()
        server.start()
        assert (await asyncio.wait_for(queued, 10))["seq"] == 5
        got = await take(stream, 4)
        assert [n["message"] for n in got] == ["down 0", "down 1", "down 2", "queued while down"]
        assert [n["seq"] for n in got] == [2, 3, 4, 5]
        assert bob.position["seq"] == 5
    finally:
        await bob.close()
        await alice.close()
        server.stop()


async def test_a_live_gap_is_filled_from_the_history(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TidingsClient(server.url, token=server.token("bob")) as bob:
        stream = bob.notifications()
        classify = bob.cursor.classify
        lost: list[int] = []

        def lose_seq_2(frame: dict[str, Any], *, replay: bool) -> Any:
            if frame["seq"] == 2 and not lost:
                lost.append(2)  # as if the frame never arrived
                return DROP
            return classify(frame, replay=replay)

        monkeypatch.setattr(bob.cursor, "classify", lose_seq_2)
        async with AsyncPublisher(server.url, server.token("ops", admin=True)) as publisher:
            for i in range(4):
                await publisher.publish("bob", f"m{i}")
        got = await take(stream, 4)
        assert lost == [2]
        assert [(n["seq"], n["message"]) for n in got] == [
            (1, "m0"),
            (2, "m1"),
            (3, "m2"),
            (4, "m3"),
        ]


async def test_first_connection_errors_are_clear(server: ServerProcess) -> None:
    with pytest.raises(Unauthorized, match="refused the token"):
        await TidingsClient(server.url, token="not-a-token").connect()
    down = ServerProcess(server.data_dir)  # never started: nothing listens on its port
    with pytest.raises(ServerUnreachable, match="connection refused"):
        await TidingsClient(down.url, token=server.token("bob")).connect()


def test_publisher_is_idempotent_and_reports_errors(server: ServerProcess) -> None:
    with Publisher(server.url, server.token("ops", admin=True)) as publisher:
        first = publisher.publish(["alice", "bob"], "deployed", idempotency_key="deploy-7")
        again = publisher.publish(["alice", "bob"], "deployed", idempotency_key="deploy-7")
    assert [r["userId"] for r in first["recipients"]] == ["alice", "bob"]
    assert not first["duplicate"] and again["duplicate"]
    assert again["notificationId"] == first["notificationId"]
    with pytest.raises(RequestFailed) as info, Publisher(server.url, server.token("bob")) as p:
        p.publish("alice", "not an admin")
    assert (info.value.code, info.value.status) == ("forbidden", 403)
    with pytest.raises(Unauthorized), Publisher(server.url, "bad") as p:
        p.publish("alice", "bad token")


async def test_publisher_broadcasts_to_a_topic_with_tags_and_expiry(server: ServerProcess) -> None:
    """``broadcast`` stores one item in the topic and every subscriber has it,
    with the tags and expiry given; ``publish`` carries them to users too."""
    import httpx

    admin = {"Authorization": f"Bearer {server.token('ops', admin=True)}"}
    soon = "2999-01-01T00:00:00Z"
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        for user in ("ann", "ben"):
            put = await http.put(f"/v1/topics/news/subscribers/{user}")
            assert put.status_code == 200, put.text
        async with AsyncPublisher(server.url, server.token("ops", admin=True)) as publisher:
            sent = await publisher.broadcast("launch", topic="news", tags=["product"])
            again = await publisher.publish("ann", "personal", expires_at=soon, tags=["x"])
        assert sent["topic"] == "news" and sent["seq"] == 1 and sent["recipients"] == []
        assert [r["userId"] for r in again["recipients"]] == ["ann"]
        for user in ("ann", "ben"):
            items = (await http.get(f"/v1/users/{user}/inbox")).json()["items"]
            launch = next(i for i in items if i["message"] == "launch")
            assert launch["notificationId"] == sent["notificationId"] and launch["tags"] == [
                "product"
            ]
        ann = (await http.get("/v1/users/ann/inbox")).json()["items"]
        personal = next(i for i in ann if i["message"] == "personal")
        assert personal["expiresAt"].startswith("2999-01-01") and personal["tags"] == ["x"]
    with Publisher(server.url, server.token("ops", admin=True)) as sync_publisher:
        everyone = sync_publisher.broadcast("all hands")
    assert everyone["topic"] == "everyone"
