"""The broker contract on the memory and Redis brokers, plus what only Redis
has: several nodes, and a link that can break and come back."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.broker_contract import BrokerContract, MakeNode, Node, Recorder, frame
from tests.server import free_port
from tests.services import missing, require_driver, require_redis, with_query
from tidings.broker import open_broker
from tidings.broker.base import Broker
from tidings.broker.memory import MemoryBroker
from tidings.core.errors import Unavailable
from tidings.core.models import Publication


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def make_node(self) -> AsyncIterator[MakeNode]:
        brokers: list[Broker] = []

        async def make() -> Node:
            node = Node(MemoryBroker(), Recorder())
            await node.broker.start(node.recorder.on_publication, node.recorder.on_state)
            brokers.append(node.broker)
            return node

        yield make
        for broker in brokers:
            await broker.stop()


async def start_node(url: str) -> Node:
    node = Node(open_broker(url), Recorder())
    await node.broker.start(node.recorder.on_publication, node.recorder.on_state)
    return node


class TestRedisBroker(BrokerContract):
    @pytest.fixture(autouse=True)
    def driver(self) -> None:
        require_driver("redis")

    @pytest.fixture
    def redis_url(self) -> str:
        """The shared Redis, under a prefix no other test uses."""
        return with_query(require_redis(), f"prefix=tidings-test-{uuid.uuid4().hex[:12]}")

    @pytest.fixture
    async def make_node(self, redis_url: str) -> AsyncIterator[MakeNode]:
        nodes: list[Node] = []

        async def make() -> Node:
            node = await start_node(redis_url)
            nodes.append(node)
            return node

        yield make
        for node in nodes:
            await node.broker.stop()

    async def test_nodes_receive_each_others_publications(self, make_node: MakeNode) -> None:
        nodes = [await make_node() for _ in range(3)]
        await asyncio.gather(
            *(
                node.broker.publish([Publication(f"from-{i}", n, frame(n)) for n in range(1, 21)])
                for i, node in enumerate(nodes)
            )
        )
        for node in nodes:
            got = await node.recorder.wait_for(60)
            for i in range(3):
                assert [p for p in got if p.user_id == f"from-{i}"] == [
                    Publication(f"from-{i}", n, frame(n)) for n in range(1, 21)
                ]

    async def test_concurrent_publishes_keep_call_order(self, make_node: MakeNode) -> None:
        """Hundreds of publishes at once (more than a connection pool would hold)
        all go out, in the order they were called."""
        sender, receiver = await make_node(), await make_node()
        sent = [Publication("bob", n, frame(n)) for n in range(1, 501)]
        await asyncio.gather(*(sender.broker.publish([p]) for p in sent))
        assert await receiver.recorder.wait_for(len(sent)) == sent

    async def test_prefixes_keep_deployments_apart(self, make_node: MakeNode) -> None:
        mine = await make_node()
        other = await start_node(with_query(require_redis(), f"prefix=other-{uuid.uuid4().hex}"))
        try:
            await other.broker.publish([Publication("bob", 1, b"theirs")])
            await mine.broker.publish([Publication("bob", 1, b"mine")])
            assert await other.recorder.wait_for(1) == [Publication("bob", 1, b"theirs")]
            assert await mine.recorder.wait_for(1) == [Publication("bob", 1, b"mine")]
            await asyncio.sleep(0.1)
            assert len(mine.recorder.publications) == len(other.recorder.publications) == 1
        finally:
            await other.broker.stop()

    async def test_url_options(self) -> None:
        from tidings.broker.redis.broker import RedisBroker

        broker = RedisBroker.from_url("redis://h:6380/2?prefix=acme&socket_keepalive=yes")
        assert (broker.url, broker.channel) == ("redis://h:6380/2?socket_keepalive=yes", "acme:pub")
        assert RedisBroker.from_url("redis://h").channel == "tidings:pub"


def test_encoding_round_trips_and_rejects_garbage() -> None:
    require_driver("redis")
    from tidings.broker.redis.broker import HEADER, decode, encode

    publication = Publication("zoë", 2**63 - 1, b'{"a":1}\x00\xff')
    message = encode(publication)
    assert len(message) == HEADER.size + len("zoë".encode()) + len(publication.payload)
    assert decode(message) == publication
    topical = Publication("", 7, b"{}", topic="news.eu")
    assert decode(encode(topical)) == topical
    for bad in (b"", message[:5], b"\x09" + message[1:], message[: HEADER.size + 2]):
        with pytest.raises(ValueError):
            decode(bad)
    with pytest.raises(ValueError):
        encode(Publication("x" * 70_000, 1, b""))


class RedisServer:
    """A redis-server of our own on a fixed port, to kill and bring back."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "not on PATH")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_driver("redis")
    require_redis()
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    if server.proc is not None:
        server.signal(signal.SIGCONT)
    server.kill()


async def test_redis_outage_is_reported_and_survived(own_redis: RedisServer) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    sender, receiver = await start_node(url), await start_node(url)
    try:
        await sender.broker.publish([Publication("bob", 1, b"before")])
        assert await receiver.recorder.wait_for(1) == [Publication("bob", 1, b"before")]

        own_redis.kill()
        await receiver.recorder.wait_state([False])
        await sender.recorder.wait_state([False])
        with pytest.raises(Unavailable):
            await sender.broker.publish([Publication("bob", 2, b"lost")])
        with pytest.raises(Unavailable):
            await receiver.broker.ping()

        own_redis.start()
        await receiver.recorder.wait_state([False, True])
        await sender.recorder.wait_state([False, True])
        await receiver.broker.ping()
        await sender.broker.publish([Publication("bob", 3, b"after")])
        got = await receiver.recorder.wait_for(2)
        assert got == [Publication("bob", 1, b"before"), Publication("bob", 3, b"after")]
    finally:
        await sender.broker.stop()
        await receiver.broker.stop()


async def test_redis_down_at_start_is_reported_then_joined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node may start before its Redis: start() reports the link down instead
    of failing, publishing and ping answer Unavailable, and once the server
    answers the link comes up by itself and carries publications."""
    require_driver("redis")
    require_redis()
    secret = open_broker(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    recorder = Recorder()
    await secret.start(recorder.on_publication, recorder.on_state)
    try:
        assert recorder.states == [False]
        assert "unreachable at start" in caplog.text and "hunter2" not in caplog.text
        with pytest.raises(Unavailable):
            await secret.publish([Publication("bob", 1, b"x")])
        with pytest.raises(Unavailable):
            await secret.ping()
    finally:
        await secret.stop()

    server = RedisServer(free_port(), tmp_path / "redis.log")
    url = f"redis://127.0.0.1:{server.port}/0"
    early, late = Node(open_broker(url), Recorder()), Node(open_broker(url), Recorder())
    try:
        await early.broker.start(early.recorder.on_publication, early.recorder.on_state)
        server.start()
        await late.broker.start(late.recorder.on_publication, late.recorder.on_state)
        await early.recorder.wait_state([False, True])
        assert late.recorder.states == []
        await early.broker.ping()
        await late.broker.publish([Publication("bob", 1, b"joined")])
        assert await early.recorder.wait_for(1) == [Publication("bob", 1, b"joined")]
    finally:
        await early.broker.stop()
        await late.broker.stop()
        server.kill()


async def test_redis_refusing_the_node_fails_start() -> None:
    """Bad credentials are an answer, not an outage: start fails at once,
    naming the server, without the password."""
    require_driver("redis")
    shared = urlsplit(require_redis())
    where = f"{shared.hostname}:{shared.port or 6379}"
    broker = open_broker(f"redis://tidings-test-nobody:hunter2@{where}/0")
    with pytest.raises(
        Unavailable, match="refused this node: invalid username-password"
    ) as failure:
        await broker.start(Recorder().on_publication, Recorder().on_state)
    assert "hunter2" not in str(failure.value)


async def test_silent_redis_is_detected_by_ping(own_redis: RedisServer) -> None:
    """A frozen server keeps its sockets open; only the watcher's ping notices."""
    from tidings.broker.redis.broker import RedisBroker
    from tidings.broker.redis.link import Backoff

    broker = RedisBroker(
        f"redis://127.0.0.1:{own_redis.port}/0", backoff=Backoff(timeout=0.5, ping_interval=0.2)
    )
    recorder = Recorder()
    await broker.start(recorder.on_publication, recorder.on_state)
    try:
        own_redis.signal(signal.SIGSTOP)
        await recorder.wait_state([False], timeout=5)
        own_redis.signal(signal.SIGCONT)
        await recorder.wait_state([False, True], timeout=10)
        await broker.publish([Publication("bob", 1, b"x")])
        assert await recorder.wait_for(1) == [Publication("bob", 1, b"x")]
    finally:
        await broker.stop()
