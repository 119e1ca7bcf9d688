"""Exactly once, in order, when the broker reorders or loses frames: a node with a
real SQLite store, a broker whose deliveries the test makes by hand (in any
order, or never), and fake connections that record what they are sent.

Two publishing nodes can get seq 5 and 6 of one user onto the broker in
either order; a receiving connection holds 6 for ``gap_wait``, and if 5 has
not come by then, reads the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidings.broker.base import Handler, StateHandler
from tidings.core.cursor import StreamCursor
from tidings.core.errors import Unavailable
from tidings.core.ids import new_id
from tidings.core.inbox import Mark
from tidings.core.models import Publication, PublishRequest
from tidings.node import Node
from tidings.store import open_store

GAP_WAIT = 0.1


class ManualBroker:
    """Records what the node publishes; the test delivers it (or not) itself."""

    def __init__(self) -> None:
        self.sent: list[Publication] = []
        self.down = False
        self.on_state: StateHandler | None = None

    async def start(self, on_publication: Handler, on_state: StateHandler) -> None:
        self.on_state = on_state

    async def stop(self) -> None:
        return None

    async def publish(self, publications: Sequence[Publication]) -> None:
        if self.down:
            raise Unavailable("broker down (test)")
        self.sent.extend(publications)

    async def ping(self) -> None:
        if self.down:
            raise Unavailable("broker down (test)")

    def set_down(self, down: bool) -> None:
        self.down = down
        assert self.on_state is not None
        self.on_state(not down)


class FakeConnection:
    def __init__(self, user_id: str, conn_id: str = "c1") -> None:
        self.id = conn_id
        self.user_id = user_id
        self.cursor = StreamCursor()
        self.last_seen = 0.0
        self.last_ping = 0.0
        self.connected_at = self.last_active = 0.0
        self.source_ip = self.user_agent = ""
        self.frames: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def drain(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))

    def close(self, code: int, reason: str) -> None:
        self.closed = code

    def ping(self) -> None:
        return None

    def abort(self) -> None:
        return None

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "notification"]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = open_store(f"sqlite:///{tmp_path / 'tidings.db'}", durable=False)
    node = Node(store, ManualBroker(), encode=lambda payload: payload, gap_wait=GAP_WAIT)
    await node.start()
    yield node
    await node.stop()


def broker_of(node: Node) -> ManualBroker:
    assert isinstance(node.broker, ManualBroker)
    return node.broker


async def publish(node: Node, user: str, count: int) -> list[Publication]:
    """Store ``count`` notifications; returns what went to the broker, undelivered."""
    broker = broker_of(node)
    before = len(broker.sent)
    for i in range(count):
        await node.publish([user], f"m{i}")
    return broker.sent[before:]


async def connected(
    node: Node, user: str, *, since: int | None, conn_id: str = "c1"
) -> FakeConnection:
    conn = FakeConnection(user, conn_id)
    conn.cursor = StreamCursor(since, syncing=since is not None)
    node.attach(conn, since)
    await asyncio.sleep(0.02)
    return conn


def count_reads(node: Node) -> list[int]:
    """Spy on the store: the ``after_seq`` of every stream read."""
    reads: list[int] = []
    read = node.store.read_stream

    async def spy(user_id: str, *, after_seq: int, **kwargs: Any) -> Any:
        reads.append(after_seq)
        return await read(user_id, after_seq=after_seq, **kwargs)

    node.store.read_stream = spy  # type: ignore[method-assign]
    return reads


async def test_seq_6_before_5_is_held_and_both_go_out_in_order(node: Node) -> None:
    await publish(node, "bob", 4)
    conn = await connected(node, "bob", since=4)
    assert [(f["type"], f["seq"]) for f in conn.frames] == [("caughtUp", 4)]
    five, six = await publish(node, "bob", 2)
    reads = count_reads(node)

    node.hub.deliver(six)
    assert conn.seqs == []  # held: 5 may still come
    await asyncio.sleep(GAP_WAIT / 3)
    node.hub.deliver(five)
    assert conn.seqs == []  # a gap wait is running: held too
    await asyncio.sleep(GAP_WAIT * 1.5)
    assert conn.seqs == [5, 6]
    assert reads == []  # 5 came in time: no store read
    node.hub.deliver(six)
    node.hub.deliver(five)
    [seven] = await publish(node, "bob", 1)
    node.hub.deliver(seven)
    assert conn.seqs == [5, 6, 7]


async def test_seq_6_whose_5_never_comes_is_completed_from_the_store(node: Node) -> None:
    await publish(node, "bob", 4)
    conn = await connected(node, "bob", since=4)
    five, six, seven = await publish(node, "bob", 3)
    reads = count_reads(node)

    node.hub.deliver(six)
    node.hub.deliver(seven)
    await asyncio.sleep(GAP_WAIT / 2)
    assert conn.seqs == []
    await asyncio.sleep(GAP_WAIT)
    assert conn.seqs == [5, 6, 7]
    assert reads == [4]  # one read, from where the connection was
    node.hub.deliver(five)  # the broker's late copy
    assert conn.seqs == [5, 6, 7]
    assert [f["message"] for f in conn.frames if f["type"] == "notification"] == ["m0", "m1", "m2"]
    assert (node.catchup.replays, node.catchup.gap_repairs, node.catchup.outage_repairs) == (
        1,
        1,
        0,
    )


async def test_every_connection_of_the_user_gets_the_same_order(node: Node) -> None:
    """A connection mid-replay, one live, one with a gap: all end with 1..6, once."""
    await publish(node, "bob", 2)
    live = await connected(node, "bob", since=0)
    pubs = await publish(node, "bob", 4)  # 3..6
    for pub in pubs[:1]:
        node.hub.deliver(pub)
    late = await connected(node, "bob", since=1, conn_id="c2")
    for pub in reversed(pubs):
        node.hub.deliver(pub)
    await asyncio.sleep(GAP_WAIT * 2)
    assert live.seqs == [1, 2, 3, 4, 5, 6]
    assert late.seqs == [2, 3, 4, 5, 6]


async def test_a_repair_during_a_gap_wait_reads_the_store_once_more(node: Node) -> None:
    """5 and 6 arrive out of order and are released from what was held; 7 was
    lost in a broker outage whose repair ran during that wait: it must come too."""
    await publish(node, "bob", 3)
    conn = await connected(node, "bob", since=0)
    four, five, six, _lost = await publish(node, "bob", 4)
    node.hub.deliver(four)
    assert conn.seqs == [1, 2, 3, 4]
    node.hub.deliver(six)
    node.hub.deliver(five)
    await node.repair_all()
    await asyncio.sleep(GAP_WAIT * 2)
    assert conn.seqs == [1, 2, 3, 4, 5, 6, 7]


async def test_a_live_only_connection_gets_what_an_outage_swallowed(node: Node) -> None:
    """No ``since`` and nothing received yet: the outage must not leave it without
    a starting point (it would take its first seq from whatever comes next)."""
    conn = await connected(node, "bob", since=None)
    broker = broker_of(node)
    broker.set_down(True)
    await asyncio.sleep(0.05)
    broker.down = False  # Redis is back before this node's watcher noticed
    lost = await publish(node, "bob", 3)
    broker.set_down(False)
    await asyncio.sleep(0.05)
    node.hub.deliver(lost[-1])
    await asyncio.sleep(GAP_WAIT * 2)
    assert conn.seqs == [1, 2, 3]
    assert node.catchup.outage_repairs == 1 and node.catchup.replayed == 3


async def test_what_the_broker_refused_goes_to_local_sockets_and_out_again(node: Node) -> None:
    conn = await connected(node, "bob", since=0)
    other = await connected(node, "alice", since=0, conn_id="c2")
    broker = broker_of(node)
    broker.set_down(True)
    await publish(node, "bob", 3)
    await publish(node, "alice", 1)
    assert conn.seqs == [1, 2, 3] and other.seqs == [1]  # this node's sockets: at once
    assert broker.sent == []
    assert node.broker_failures == 4  # one per publish
    broker.set_down(False)
    await asyncio.sleep(0.05)
    # Other nodes get the latest per user; a gap there makes them read the rest.
    assert sorted((p.user_id, p.seq) for p in broker.sent) == [("alice", 1), ("bob", 3)]
    node.hub.deliver(broker.sent[0])
    assert conn.seqs == [1, 2, 3] and other.seqs == [1]


async def test_topic_frames_a_broker_outage_swallowed_are_repaired(node: Node) -> None:
    """Another node broadcast while the broker was down: this node's subscribers
    are behind in the topic; when the broker is back, they read the store."""
    await node.publish([], "first", topic="everyone")
    conn = FakeConnection("bob")
    conn.cursor = StreamCursor(0, syncing=True)
    node.attach(conn, 0, {"everyone": 0})
    await asyncio.sleep(0.05)
    topic_seqs = [f["seq"] for f in conn.frames if f.get("topic") == "everyone"]
    assert topic_seqs == [1]
    broker = broker_of(node)
    broker.set_down(True)
    await node.store.append(  # as another node would store it, its frame lost
        PublishRequest(
            id=new_id(), recipients=(), message="while down", created_at=0, topic="everyone"
        )
    )
    broker.set_down(False)
    for _ in range(50):
        if len([f for f in conn.frames if f.get("topic") == "everyone"]) == 2:
            break
        await asyncio.sleep(0.02)
    frames = [f for f in conn.frames if f.get("topic") == "everyone"]
    assert [(f["seq"], f["message"]) for f in frames] == [(1, "first"), (2, "while down")]


async def test_inbox_changes_reach_local_connections_while_the_broker_is_down(
    node: Node,
) -> None:
    await publish(node, "bob", 1)
    conn = await connected(node, "bob", since=None)
    broker_of(node).set_down(True)
    page = await node.store.read_stream("bob", after_seq=0)
    await node.mark("bob", Mark("read", ids=(page.items[0].id,)))
    changes = [f for f in conn.frames if f["type"] == "inbox"]
    assert changes and changes[-1]["unread"] == 0


async def test_an_outage_remembers_a_bounded_number_of_streams(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap, a stream's latest frame is not kept for the broker's return;
    it is stored and delivered here all the same."""
    from tidings import node as node_module

    monkeypatch.setattr(node_module, "MAX_UNSENT", 3)
    conns = [await connected(node, f"u{i}", since=None, conn_id=f"c{i}") for i in range(5)]
    broker = broker_of(node)
    broker.set_down(True)
    await asyncio.sleep(0.02)
    for i in range(5):
        await node.publish([f"u{i}"], "first")
        await node.publish([f"u{i}"], "second")
    assert all(conn.seqs == [1, 2] for conn in conns)
    broker.set_down(False)
    await asyncio.sleep(0.05)
    resent = [(p.user_id, p.seq) for p in broker.sent]
    assert sorted(resent) == [("u0", 2), ("u1", 2), ("u2", 2)]
