"""An ack means committed: kill -9 right after acks loses nothing."""

from __future__ import annotations

from pathlib import Path

from tests.ledger import Ledger
from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until, send_json


async def test_kill_9_after_acks_loses_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--user-send", "any").start()
    senders = [await open_ws(server.ws_url, token=server.token(f"s{i}")) for i in range(5)]
    for n, ws in enumerate(senders):
        for i in range(200):
            await send_json(
                ws,
                {
                    "action": "sendNotification",
                    "userId": "bob",
                    "message": f"{n}-{i}",
                    "requestId": i,
                },
            )
    acked = []
    ledger = Ledger()
    for ws in senders:
        for _ in range(200):
            frame = await recv_json(ws)
            assert frame["type"] == "ack"
            acked.append(frame["notificationId"])
            ledger.ack(frame["notificationId"], ["bob"])
    server.kill()  # SIGKILL, no shutdown path at all

    again = ServerProcess(tmp_path / "data", port=server.port).start()
    try:
        bob = await open_ws(again.ws_url, token=again.token("bob"), since=0)
        frames = await recv_until(bob, "caughtUp", timeout=10)
        stored = [f["notificationId"] for f in frames if f["type"] == "notification"]
        assert sorted(stored) == sorted(acked)
        assert [f["seq"] for f in frames[:-1]] == list(range(1, 1001))
        received = ledger.follow("bob", "bob")
        received += [(f["seq"], f["notificationId"]) for f in frames[:-1]]
        ledger.count().check()
        await bob.close()
    finally:
        again.stop()
