"""The broker contract, written once and run on every backend.

A backend's test class inherits ``BrokerContract`` and provides one fixture,
``make_node``: an async factory that starts a new broker (a node's end of the
link) with a ``Recorder`` as its handlers, and stops them all afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tidings.broker.base import Broker
from tidings.core.models import Publication


@dataclass
class Recorder:
    """The handlers a node registers, keeping what they were given."""

    publications: list[Publication] = field(default_factory=list)
    states: list[bool] = field(default_factory=list)

    def on_publication(self, publication: Publication) -> None:
        self.publications.append(publication)

    def on_state(self, up: bool) -> None:
        self.states.append(up)

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Publication]:
        """The first ``count`` publications, once that many have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.publications) < count:
                await asyncio.sleep(0.005)
        return self.publications[:count]

    async def wait_state(self, states: list[bool], *, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.states != states:
                await asyncio.sleep(0.01)


@dataclass
class Node:
    broker: Broker
    recorder: Recorder


MakeNode = Callable[[], Awaitable[Node]]


def frame(n: int) -> bytes:
    """A payload as the node builds one; the broker must not look inside."""
    return b'{"type":"notification","seq":%d,"message":"caf\xc3\xa9"}' % n


class BrokerContract:
    @pytest.fixture
    async def node(self, make_node: MakeNode) -> Node:
        return await make_node()

    async def test_publication_arrives_unchanged(self, node: Node) -> None:
        sent = [
            Publication("bob", 1, frame(1)),
            Publication("zoë 🎉", 2**53 + 1, bytes(range(256)) * 4),
            Publication("", 0, b""),
            Publication("x" * 1000, 7, b"\x00" * 11),
        ]
        await node.broker.publish(sent)
        assert await node.recorder.wait_for(len(sent)) == sent

    async def test_batch_keeps_its_order(self, node: Node) -> None:
        sent = [Publication(f"user-{n % 7}", n, frame(n)) for n in range(1, 501)]
        await node.broker.publish(sent)
        assert await node.recorder.wait_for(len(sent)) == sent

    async def test_consecutive_publishes_arrive_in_order(self, node: Node) -> None:
        sent = [Publication("bob", n, frame(n)) for n in range(1, 51)]
        for publication in sent:
            await node.broker.publish([publication])
        assert await node.recorder.wait_for(len(sent)) == sent

    async def test_empty_batch_is_a_no_op(self, node: Node) -> None:
        await node.broker.publish([])
        await node.broker.publish([Publication("bob", 1, b"x")])
        assert await node.recorder.wait_for(1) == [Publication("bob", 1, b"x")]

    async def test_up_link_reports_no_state_change(self, node: Node) -> None:
        await node.broker.ping()
        await node.broker.publish([Publication("bob", 1, b"x")])
        await node.recorder.wait_for(1)
        assert node.recorder.states == []
