"""The WebSocket endpoint against a real server process and real sockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import ServerProcess
from tests.wsclient import assert_silent, open_ws, recv_json, recv_until, send_json


async def stored_seqs(server: ServerProcess, user: str) -> list[int]:
    ws = await open_ws(server.ws_url, token=server.token(user), since=0)
    frames = await recv_until(ws, "caughtUp")
    await ws.close()
    return [f["seq"] for f in frames if f["type"] == "notification"]


async def test_seed_scenario_alice_sends_bob_receives_on_both_connections(
    server: ServerProcess,
) -> None:
    alice = await open_ws(server.ws_url, token=server.token("alice"))
    bob1 = await open_ws(server.ws_url, token=server.token("bob"))
    bob2 = await open_ws(server.ws_url, token=server.token("bob"))
    await send_json(
        alice,
        {"action": "sendNotification", "userId": "bob", "message": "hi bob", "requestId": "r1"},
    )
    ack = await recv_json(alice)
    got1, got2 = await recv_json(bob1), await recv_json(bob2)
    assert got1 == got2
    assert got1["message"] == "hi bob" and got1["notificationId"]
    assert got1["type"] == "notification" and got1["seq"] == 1
    assert got1["sender"] == "alice" and got1["userId"] == "bob"
    assert ack == {
        "type": "ack",
        "requestId": "r1",
        "notificationId": got1["notificationId"],
        "seq": 1,
    }
    await assert_silent(alice)  # the sender is not the recipient
    for ws in (alice, bob1, bob2):
        await ws.close()


async def test_offline_catch_up_replays_exactly_the_missed_notifications(
    server: ServerProcess,
) -> None:
    alice = await open_ws(server.ws_url, token=server.token("alice"))
    for i in range(100):
        await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": f"m{i}"})
    acks = [await recv_json(alice) for _ in range(100)]
    assert sorted(a["seq"] for a in acks) == list(range(1, 101))

    bob = await open_ws(server.ws_url, token=server.token("bob"), since=0)
    frames = await recv_until(bob, "caughtUp")
    notes = [f for f in frames if f["type"] == "notification"]
    assert [n["seq"] for n in notes] == list(range(1, 101))
    assert [n["message"] for n in notes] == [f"m{i}" for i in range(100)]
    assert frames[-1] == {
        "type": "caughtUp",
        "seq": 100,
        "complete": True,
        "topics": {"everyone": 0},
    }

    # Resume from the middle: only what came after.
    again = await open_ws(server.ws_url, token=server.token("bob"), since=90)
    frames = await recv_until(again, "caughtUp")
    assert [f["seq"] for f in frames[:-1]] == list(range(91, 101))
    # Then live, head + 1 onwards.
    await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "live"})
    assert (await recv_json(again))["seq"] == 101
    assert (await recv_json(bob))["seq"] == 101
    for ws in (alice, bob, again):
        await ws.close()


async def test_replay_racing_live_sends_has_no_gap_and_no_duplicate(
    server: ServerProcess,
) -> None:
    senders = [await open_ws(server.ws_url, token=server.token(f"s{i}")) for i in range(4)]
    for i in range(400):
        await send_json(
            senders[i % 4], {"action": "sendNotification", "userId": "bob", "message": f"pre{i}"}
        )
    for ws in senders:
        for _ in range(100):
            await recv_json(ws)

    async def blast(ws: object, n: int) -> None:
        for i in range(n):
            await send_json(
                ws,
                {
                    "action": "sendNotification",
                    "userId": "bob",  # type: ignore[arg-type]
                    "message": f"during{i}",
                },
            )

    # Reconnect with since while 400 more sends race the replay.
    racing = [asyncio.create_task(blast(ws, 100)) for ws in senders]
    bob = await open_ws(server.ws_url, token=server.token("bob"), since=0)
    await asyncio.gather(*racing)
    seqs: list[int] = []
    caught_up = None
    while len(seqs) < 800:
        frame = await recv_json(bob)
        if frame["type"] == "caughtUp":
            caught_up = frame
            assert seqs == list(range(1, frame["seq"] + 1))
        else:
            seqs.append(frame["seq"])
    assert caught_up is not None
    assert seqs == list(range(1, 801))
    await assert_silent(bob)
    for ws in (*senders, bob):
        await ws.close()


async def test_without_since_the_connection_gets_only_notification_frames(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        admin = {"Authorization": f"Bearer {server.token('ops', admin=True)}"}
        await http.post(
            "/v1/notifications", json={"userId": "bob", "message": "old"}, headers=admin
        )
        bob = await open_ws(server.ws_url, token=server.token("bob"))
        await assert_silent(bob)  # no replay, no caughtUp
        await http.post(
            "/v1/notifications", json={"userId": "bob", "message": "new"}, headers=admin
        )
        frame = await recv_json(bob)
        assert frame["type"] == "notification" and frame["message"] == "new"
        await bob.close()


async def test_bad_input_gets_an_error_keeps_the_connection_and_stores_nothing(
    server: ServerProcess,
) -> None:
    ws = await open_ws(server.ws_url, token=server.token("alice"))
    cases = [
        ("not json", "bad_request"),
        ('{"action":"sendNotification","userId":"bob"}', "bad_request"),
        ('{"action":"sendNotification","userId":7,"message":"x","requestId":"q"}', "bad_request"),
        (
            '{"action":"sendNotification","userId":"bob","message":"' + "x" * 40_000 + '"}',
            "bad_request",
        ),
        ('{"action":"deleteEverything"}', "invalid_route"),
    ]
    for raw, code in cases:
        await ws.send(raw)
        error = await recv_json(ws)
        assert error["type"] == "error" and error["code"] == code, error
    await ws.send('{"action":"nope","requestId":"r7"}')
    assert await recv_json(ws) == {
        "type": "error",
        "code": "invalid_route",
        "message": "Invalid route",
        "requestId": "r7",
    }
    assert await stored_seqs(server, "bob") == []
    # Still open and working.
    await send_json(ws, {"action": "ping", "requestId": 1})
    assert await recv_json(ws) == {"type": "pong", "requestId": 1}
    await ws.close()


async def test_oversize_frame_closes_with_1009_and_others_keep_working(
    server: ServerProcess,
) -> None:
    big = await open_ws(server.ws_url, token=server.token("alice"))
    other = await open_ws(server.ws_url, token=server.token("carol"))
    await big.send('{"action":"sendNotification","userId":"bob","message":"' + "x" * 140_000 + '"}')
    with pytest.raises(ConnectionClosed) as info:
        await recv_json(big)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    await send_json(other, {"action": "sendNotification", "userId": "carol", "message": "ok"})
    frames = [await recv_json(other), await recv_json(other)]
    assert {f["type"] for f in frames} == {"notification", "ack"}
    assert await stored_seqs(server, "bob") == []
    await other.close()


async def test_fragmented_message_is_reassembled(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, token=server.token("alice"))
    parts = ['{"action":"sendNotification",', '"userId":"alice",', '"message":"frag"}']
    await ws.send(iter(parts))
    frames = [await recv_json(ws), await recv_json(ws)]
    assert {f["type"] for f in frames} == {"notification", "ack"}
    await ws.close()


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 401),
        ({"token": "not-a-jwt"}, 401),
        ({"token": "EXPIRED"}, 401),
        ({"token": "OK", "since": "-1"}, 400),
        ({"token": "OK", "since": "abc"}, 400),
    ],
)
async def test_handshake_refusals_are_http_statuses(
    server: ServerProcess, query: dict[str, str], status: int
) -> None:
    if query.get("token") == "OK":
        query["token"] = server.token("alice")
    if query.get("token") == "EXPIRED":
        query["token"] = server.token("alice", ttl=-60)
    with pytest.raises(InvalidStatus) as info:
        await open_ws(server.ws_url, **query)
    assert info.value.response.status_code == status


async def test_unknown_websocket_path_is_404(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        await open_ws(f"ws://127.0.0.1:{server.port}/elsewhere", token=server.token("a"))
    assert info.value.response.status_code == 404


async def test_bearer_header_authenticates_non_browser_clients(server: ServerProcess) -> None:
    from websockets.asyncio.client import connect

    ws = await connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {server.token('dora')}"}
    )
    await send_json(ws, {"action": "sendNotification", "userId": "dora", "message": "hdr"})
    frames = [await recv_json(ws), await recv_json(ws)]
    assert {f["type"] for f in frames} == {"notification", "ack"}
    await ws.close()


async def test_user_id_compat_needs_the_flag(tmp_path: object) -> None:
    from pathlib import Path

    strict = ServerProcess(Path(str(tmp_path)) / "strict").start()
    try:
        with pytest.raises(InvalidStatus) as info:
            await open_ws(strict.ws_url, userId="alice")
        assert info.value.response.status_code == 401
        assert b"--allow-user-id" in info.value.response.body
    finally:
        strict.stop()


async def test_seed_client_in_compat_mode_receives_seed_fields(server: ServerProcess) -> None:
    """The seed frontend: `new WebSocket(url + "?userId=bob")` and JSON.parse(event.data)."""
    bob = await open_ws(server.ws_url, userId="bob")
    alice = await open_ws(server.ws_url, userId="alice")
    await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "seed"})
    data = await recv_json(bob)
    assert data["message"] == "seed" and isinstance(data["notificationId"], str)
    assert "INSECURE: --allow-user-id" in server.log()
    await bob.close()
    await alice.close()


async def test_idempotency_key_makes_a_retry_store_nothing_new(server: ServerProcess) -> None:
    ws = await open_ws(server.ws_url, token=server.token("alice"))
    frame = {
        "action": "sendNotification",
        "userId": "bob",
        "message": "once",
        "idempotencyKey": "k-1",
        "requestId": "a",
    }
    await send_json(ws, frame)
    first = await recv_json(ws)
    await send_json(ws, {**frame, "requestId": "b"})
    second = await recv_json(ws)
    assert first["notificationId"] == second["notificationId"] and first["seq"] == second["seq"]
    assert second["requestId"] == "b"
    await send_json(ws, {**frame, "message": "different", "requestId": "c"})
    conflict = await recv_json(ws)
    assert conflict["type"] == "error" and conflict["code"] == "idempotency_conflict"
    assert await stored_seqs(server, "bob") == [1]
    await ws.close()


async def test_send_policy_none_forbids_user_sends(tmp_path: object) -> None:
    from pathlib import Path

    proc = ServerProcess(Path(str(tmp_path)) / "p", "--user-send", "none").start()
    try:
        ws = await open_ws(proc.ws_url, token=proc.token("alice"))
        await send_json(
            ws, {"action": "sendNotification", "userId": "bob", "message": "x", "requestId": 3}
        )
        error = await recv_json(ws)
        assert error["code"] == "forbidden" and error["requestId"] == 3
        await ws.close()
    finally:
        proc.stop()


async def test_ten_thousand_concurrent_sends_get_distinct_ids_and_seqs(
    server: ServerProcess,
) -> None:
    senders = [await open_ws(server.ws_url, token=server.token(f"u{i}")) for i in range(10)]

    async def blast(ws: object, base: int) -> list[dict[str, object]]:
        for i in range(1000):
            await send_json(
                ws,
                {
                    "action": "sendNotification",
                    "userId": "bob",  # type: ignore[arg-type]
                    "message": f"{base + i}",
                    "requestId": base + i,
                },
            )
        return [await recv_json(ws, 30) for _ in range(1000)]  # type: ignore[arg-type]

    results = await asyncio.gather(*(blast(ws, n * 1000) for n, ws in enumerate(senders)))
    acks = [a for batch in results for a in batch]
    assert all(a["type"] == "ack" for a in acks)
    assert len({a["notificationId"] for a in acks}) == 10_000
    assert sorted(a["seq"] for a in acks) == list(range(1, 10_001))  # type: ignore[type-var]
    # Ids sort in seq order (one node): time-sortable and assigned in commit order.
    by_seq = sorted(acks, key=lambda a: a["seq"])  # type: ignore[arg-type,return-value]
    ids = [a["notificationId"] for a in by_seq]
    assert ids == sorted(ids)  # type: ignore[type-var]
    for ws in senders:
        await ws.close()


async def test_dead_peer_is_found_by_the_heartbeat(tmp_path: object) -> None:
    from pathlib import Path

    from websockets.asyncio.client import connect

    proc = ServerProcess(
        Path(str(tmp_path)) / "hb", "--ping-interval", "0.3", "--ping-timeout", "0.3"
    ).start()
    try:
        # A client that answers pings stays; one that cannot (reading paused) is dropped.
        alive = await connect(f"{proc.ws_url}?token={proc.token('a')}")
        mute = await open_ws(proc.ws_url, token=proc.token("b"))
        mute.transport.pause_reading()
        await asyncio.sleep(2.0)
        assert "ping timeout" in proc.log()
        async with httpx.AsyncClient(base_url=proc.url) as http:
            ready = (await http.get("/readyz")).json()
        assert ready["connections"] == 1
        await send_json(alive, {"action": "ping"})
        assert (await recv_json(alive))["type"] == "pong"
        await alive.close()
    finally:
        proc.stop()
