"""Frames out: replies written together at the end of a loop iteration keep their order."""

from __future__ import annotations

import asyncio

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, send_json


async def test_sends_in_flight_get_each_notification_then_its_ack_in_order(
    server: ServerProcess,
) -> None:
    ws = await open_ws(server.ws_url, token=server.token("erin"))
    for i in range(50):
        await send_json(
            ws, {"action": "sendNotification", "userId": "erin", "message": f"m{i}", "requestId": i}
        )
    frames = [await recv_json(ws) for _ in range(100)]
    expected = []
    for i in range(50):
        expected += [("notification", f"m{i}", i + 1), ("ack", i, i + 1)]
    got = [
        (f["type"], f["message"] if f["type"] == "notification" else f["requestId"], f["seq"])
        for f in frames
    ]
    assert got == expected
    await ws.close()


async def test_acks_of_many_senders_arrive_whole(server: ServerProcess) -> None:
    senders = [await open_ws(server.ws_url, token=server.token(f"s{i}")) for i in range(8)]
    receiver = await open_ws(server.ws_url, token=server.token("frank"))

    async def send_all(ws: object, base: int) -> list[int]:
        for i in range(200):
            await send_json(
                ws,  # type: ignore[arg-type]
                {"action": "sendNotification", "userId": "frank", "message": "x", "requestId": i},
            )
        acks = [await recv_json(ws, 15) for _ in range(200)]  # type: ignore[arg-type]
        assert all(a["type"] == "ack" for a in acks)
        return [int(a["requestId"]) for a in acks]

    results = await asyncio.gather(*(send_all(ws, n) for n, ws in enumerate(senders)))
    assert all(request_ids == list(range(200)) for request_ids in results)
    seqs = [(await recv_json(receiver, 15))["seq"] for _ in range(1600)]
    assert seqs == list(range(1, 1601))
    for ws in [*senders, receiver]:
        await ws.close()
