"""The store and broker metrics on PostgreSQL and Redis, two nodes: a publish
on one node is sent once through Redis and received by both."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from tests.on_postgres import on_postgres
from tests.server import ServerProcess
from tests.services import require_driver, require_redis
from tests.test_metrics import Moves, admin, scrape, value
from tests.wsclient import open_ws, recv_json

__all__ = ["on_postgres"]


async def test_store_and_broker_metrics_across_two_nodes(tmp_path: Path) -> None:
    require_driver("redis")
    broker = f"{require_redis()}?prefix=tidings_metrics_{uuid.uuid4().hex[:12]}"
    nodes = [
        ServerProcess(tmp_path / f"node{i}", "--broker", broker, "--user-send", "any")
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
        first, second = nodes
        before = [scrape(node.url + "/metrics") for node in nodes]
        bob = await open_ws(second.ws_url, token=second.token("bob"))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=first.url, headers=admin(first)) as http:
            for i in range(3):
                answer = await http.post(
                    "/v1/notifications", json={"userId": "bob", "message": f"{i}"}
                )
                assert answer.status_code == 201, answer.text
        assert [(await recv_json(bob))["message"] for _ in range(3)] == ["0", "1", "2"]
        await bob.close()
        after = [scrape(node.url + "/metrics") for node in nodes]
    finally:
        for node in nodes:
            node.stop()

    on_first, on_second = (Moves(b, a) for b, a in zip(before, after, strict=True))
    assert on_first("tidings_notifications_published_total", kind="personal") == 3
    assert on_first("tidings_store_commit_batch_size_sum") == 3
    assert on_first("tidings_store_commit_seconds_count") >= 1
    assert on_first("tidings_broker_published_total") == 3
    assert on_second("tidings_broker_published_total") == 0
    for moved in (on_first, on_second):  # every node hears every publication
        assert moved("tidings_broker_received_total") == 3
    assert on_first("tidings_deliveries_total") == 0
    assert on_second("tidings_deliveries_total") == 3
    for samples in after:
        info = [labels for name, labels in samples if name == "tidings_build_info"]
        assert ("broker", "redis") in info[0] and ("store", "postgresql") in info[0]
        assert value(samples, "tidings_broker_up") == 1
