"""Topics and broadcast: stored once, one frame for every subscriber, per-user state."""

from __future__ import annotations

import asyncio
import resource
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.server import ServerProcess
from tests.wsclient import assert_silent, open_ws, recv_json, recv_until, send_json


def auth(server: ServerProcess, user: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, admin=admin)}"}


async def post(http: httpx.AsyncClient, server: ServerProcess, **body: Any) -> dict[str, Any]:
    response = await http.post(
        "/v1/notifications", json=body, headers=auth(server, "ops", admin=True)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def inbox(
    http: httpx.AsyncClient, server: ServerProcess, user: str, **params: Any
) -> dict[str, Any]:
    page: dict[str, Any] = (
        await http.get(f"/v1/users/{user}/inbox", params=params, headers=auth(server, user))
    ).json()
    return page


async def test_topic_publish_is_stored_once_and_one_frame_reaches_each_subscriber(
    server: ServerProcess,
) -> None:
    users = [f"u{i}" for i in range(5)]
    async with httpx.AsyncClient(base_url=server.url) as http:
        subscribed = await http.post(
            "/v1/topics/news/subscribers",
            json={"userIds": users[:4]},
            headers=auth(server, "ops", admin=True),
        )
        assert subscribed.json() == {"topic": "news", "subscribed": 4}
        conns = {u: await open_ws(server.ws_url, token=server.token(u)) for u in users}
        await asyncio.sleep(0.2)  # subscriptions load right after the handshake
        result = await post(http, server, topic="news", message="headline")
        assert result["topic"] == "news" and result["seq"] == 1 and result["recipients"] == []
        frames = [await recv_json(conns[u]) for u in users[:4]]
        assert all(f == frames[0] for f in frames)  # identical for every subscriber
        assert frames[0]["topic"] == "news" and frames[0]["seq"] == 1
        assert frames[0]["userId"] is None
        await assert_silent(conns["u4"])  # not subscribed
        # In each subscriber's inbox, with its own read state.
        await http.post(
            "/v1/users/u0/notifications/read",
            json={"ids": [result["notificationId"]]},
            headers=auth(server, "u0"),
        )
        first = await inbox(http, server, "u0")
        second = await inbox(http, server, "u1")
        assert first["items"][0]["readAt"] is not None and first["counts"]["unread"] == 0
        assert second["items"][0]["readAt"] is None and second["counts"]["unread"] == 1
        assert second["items"][0]["userId"] == "u1"
        assert (await inbox(http, server, "u4"))["items"] == []
        history = await http.get("/v1/users/u0/export", headers=auth(server, "ops", admin=True))
        assert history.json()["subscriptions"][0]["topic"] == "news"
        for ws in conns.values():
            await ws.close()


async def test_broadcast_to_everyone_reaches_every_connection(server: ServerProcess) -> None:
    conns = [await open_ws(server.ws_url, token=server.token(f"b{i}")) for i in range(20)]
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=server.url) as http:
        result = await post(http, server, topic="everyone", message="maintenance at 6")
        frames = [await recv_json(ws) for ws in conns]
        assert {f["notificationId"] for f in frames} == {result["notificationId"]}
        page = await inbox(http, server, "somebody-new")
        assert [i["message"] for i in page["items"]] == ["maintenance at 6"]
        assert page["counts"] == {"total": 1, "unread": 1, "unseen": 1}
    for ws in conns:
        await ws.close()


async def test_subscription_starts_now_and_follows_on_every_connection(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await post(http, server, topic="sports", message="before")
        phone = await open_ws(server.ws_url, token=server.token("bob"))
        laptop = await open_ws(server.ws_url, token=server.token("bob"))
        await send_json(phone, {"action": "subscribe", "topic": "sports", "requestId": "s"})
        replies = [await recv_json(phone), await recv_json(phone)]
        ack = next(r for r in replies if r["type"] == "ack")
        assert ack == {"type": "ack", "topic": "sports", "seq": 1, "requestId": "s"}
        event = await recv_json(laptop)
        assert event == {"type": "subscription", "topic": "sports", "subscribed": True, "seq": 1}
        after = await post(http, server, topic="sports", message="after")
        for ws in (phone, laptop):
            frame = await recv_json(ws)
            assert frame["notificationId"] == after["notificationId"] and frame["seq"] == 2
        page = await inbox(http, server, "bob")
        assert [i["message"] for i in page["items"]] == ["after"]  # not "before"
        topics = await http.get("/v1/users/me/topics", headers=auth(server, "bob"))
        assert {"topic": "sports", "since": 1} in topics.json()["topics"]
        await send_json(laptop, {"action": "unsubscribe", "topic": "sports"})
        await recv_until(laptop, "ack")
        await post(http, server, topic="sports", message="gone")
        await recv_until(phone, "subscription")
        await assert_silent(phone)
        assert [i["message"] for i in (await inbox(http, server, "bob"))["items"]] == []
        for ws in (phone, laptop):
            await ws.close()


async def test_inbox_merges_personal_and_topic_items_with_independent_state(
    server: ServerProcess,
) -> None:
    admin = auth(server, "ops", admin=True)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for user in ("ann", "ben"):
            await http.put(f"/v1/topics/deals/subscribers/{user}", headers=admin)
        ids = []
        for i in range(6):
            if i % 2:
                ids.append(
                    (await post(http, server, topic="deals", message=f"t{i}"))["notificationId"]
                )
            else:
                ids.append(
                    (await post(http, server, userId="ann", message=f"p{i}"))["notificationId"]
                )
        page = await inbox(http, server, "ann")
        assert [i["notificationId"] for i in page["items"]] == ids[::-1]
        assert page["counts"] == {"total": 6, "unread": 6, "unseen": 6}
        # Mark all read up to the 4th: personal and topic items alike.
        marked = await http.post(
            "/v1/users/ann/notifications/read", json={"upTo": ids[3]}, headers=auth(server, "ann")
        )
        assert marked.json() == {"changed": 4, "counts": {"total": 6, "unread": 2, "unseen": 6}}
        unread = await inbox(http, server, "ann", read="false")
        assert [i["notificationId"] for i in unread["items"]] == [ids[5], ids[4]]
        # Marking one topic item unread again, archiving and deleting another.
        await http.post(
            "/v1/users/ann/notifications/unread",
            json={"ids": [ids[1]]},
            headers=auth(server, "ann"),
        )
        await http.post(
            "/v1/users/ann/notifications/archive",
            json={"ids": [ids[3]]},
            headers=auth(server, "ann"),
        )
        assert (
            await http.delete(f"/v1/users/ann/notifications/{ids[5]}", headers=auth(server, "ann"))
        ).status_code == 204
        counts = (await http.get("/v1/users/ann/counts", headers=auth(server, "ann"))).json()
        assert counts == {"total": 4, "unread": 2, "unseen": 4}
        tabs = (
            await http.post(
                "/v1/users/ann/counts",
                headers=auth(server, "ann"),
                json={"filters": {"unread": {"read": False}, "archived": {"archived": "only"}}},
            )
        ).json()
        assert tabs == {"counts": {"unread": 2, "archived": 1}}
        # Ben's view of the same topic items is untouched.
        ben = await inbox(http, server, "ben")
        assert [i["message"] for i in ben["items"]] == ["t5", "t3", "t1"]
        assert ben["counts"] == {"total": 3, "unread": 3, "unseen": 3}


async def test_catch_up_resumes_each_topic_from_its_own_position(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.put("/v1/topics/alerts/subscribers/me", headers=auth(server, "cat"))
        for i in range(3):
            await post(http, server, topic="alerts", message=f"a{i}")
            await post(http, server, userId="cat", message=f"p{i}")
        await post(http, server, topic="everyone", message="all")
        ws = await open_ws(
            server.ws_url, token=server.token("cat"), since=1, topics="alerts:1,everyone:0"
        )
        frames = await recv_until(ws, "caughtUp")
        by_stream: dict[str | None, list[int]] = {}
        for f in frames[:-1]:
            by_stream.setdefault(f.get("topic"), []).append(f["seq"])
        assert by_stream == {None: [2, 3], "alerts": [2, 3], "everyone": [1]}
        assert frames[-1] == {
            "type": "caughtUp",
            "seq": 3,
            "complete": True,
            "topics": {"everyone": 1, "alerts": 3},
        }
        # Live from there, in each stream's order.
        live = await post(http, server, topic="alerts", message="live")
        frame = await recv_json(ws)
        assert frame["seq"] == 4 and frame["notificationId"] == live["notificationId"]
        await ws.close()
        # A topic left out of topics= goes live from caughtUp, with its head reported.
        again = await open_ws(server.ws_url, token=server.token("cat"), since=3)
        last = (await recv_until(again, "caughtUp"))[-1]
        assert last["topics"] == {"everyone": 1, "alerts": 4}
        await again.close()


async def test_topic_replay_racing_live_publishes_has_no_gap_or_duplicate(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for i in range(50):
            await post(http, server, topic="everyone", message=f"pre{i}")

        async def more() -> None:
            for i in range(50):
                await post(http, server, topic="everyone", message=f"live{i}")

        racing = asyncio.create_task(more())
        ws = await open_ws(server.ws_url, token=server.token("dan"), since=0, topics="everyone:0")
        await racing
        seqs: list[int] = []
        while len(seqs) < 100:
            frame = await recv_json(ws)
            if frame["type"] == "notification":
                seqs.append(frame["seq"])
        assert seqs == list(range(1, 101))
        await assert_silent(ws)
        await ws.close()


async def test_bad_topic_input_is_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        admin = auth(server, "ops", admin=True)
        for body in (
            {"topic": "bad topic!", "message": "x"},
            {"topic": "news", "userId": "bob", "message": "x"},
        ):
            response = await http.post("/v1/notifications", json=body, headers=admin)
            assert response.status_code == 400, response.text
        assert (
            await http.put("/v1/topics/everyone/subscribers/me", headers=auth(server, "bob"))
        ).status_code == 400
        assert (
            await http.put("/v1/topics/news/subscribers/alice", headers=auth(server, "bob"))
        ).status_code == 403
        assert (
            await http.delete("/v1/topics/news/subscribers/me", headers=auth(server, "bob"))
        ).status_code == 404
    ws = await open_ws(server.ws_url, token=server.token("bob"))
    await send_json(ws, {"action": "subscribe", "topic": "", "requestId": 1})
    assert (await recv_json(ws))["code"] == "bad_request"
    await ws.close()


async def test_topic_to_ten_thousand_subscribers(server: ServerProcess) -> None:
    """10k subscribers, 1,000 of them connected: each connected one gets the frame
    once; the item is in every subscriber's inbox (sampled) with its own state."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    users = [f"m{i}" for i in range(10_000)]
    admin = auth(server, "ops", admin=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        for start in range(0, 10_000, 5000):
            reply = await http.post(
                "/v1/topics/big/subscribers",
                json={"userIds": users[start : start + 5000]},
                headers=admin,
            )
            assert reply.json()["subscribed"] == 5000
        conns = await asyncio.gather(
            *(open_ws(server.ws_url, token=server.token(u)) for u in users[:1000])
        )
        await asyncio.sleep(0.5)
        result = await post(http, server, topic="big", message="to ten thousand")
        frames = await asyncio.gather(*(recv_json(ws, timeout=20) for ws in conns))
        assert {f["notificationId"] for f in frames} == {result["notificationId"]}
        await asyncio.gather(*(assert_silent(ws, 0.2) for ws in conns[:50]))
        await http.post(
            "/v1/users/m7/notifications/read",
            json={"ids": [result["notificationId"]]},
            headers=admin,
        )
        for user in users[::500]:
            page = (await http.get(f"/v1/users/{user}/inbox", headers=admin)).json()
            assert [i["notificationId"] for i in page["items"]] == [result["notificationId"]]
            assert page["counts"]["unread"] == 0 if user == "m7" else 1
        assert (await http.get("/v1/users/m7/counts", headers=admin)).json()["unread"] == 0
        await asyncio.gather(*(ws.close() for ws in conns))


async def test_expired_topic_items_leave_every_inbox_and_subscribers_are_told(
    tmp_path: Path,
) -> None:
    """Each subscriber hears of the sweep with their own counts after it."""
    server = ServerProcess(tmp_path / "d", "--sweep-interval", "0.2").start()
    try:
        eve = await open_ws(server.ws_url, token=server.token("eve"))
        max_ = await open_ws(server.ws_url, token=server.token("max"))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=server.url) as http:
            stay = await post(http, server, topic="everyone", message="stay")
            soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
            result = await post(http, server, topic="everyone", message="flash", expiresAt=soon)
            for ws in (eve, max_):
                assert (await recv_json(ws))["notificationId"] == stay["notificationId"]
                assert (await recv_json(ws))["notificationId"] == result["notificationId"]
            read = await http.post(
                "/v1/users/eve/notifications/read",
                json={"ids": [stay["notificationId"]]},
                headers=auth(server, "eve"),
            )
            assert read.status_code == 200, read.text
            assert (await recv_json(eve))["unread"] == 1
            expired = {"action": "expire", "ids": [result["notificationId"]]}
            for ws, (unread, unseen) in ((eve, (0, 1)), (max_, (1, 1))):
                assert await recv_json(ws, timeout=5) == {
                    "type": "inbox",
                    "topic": "everyone",
                    "change": expired,
                    "total": 1,
                    "unread": unread,
                    "unseen": unseen,
                }
            page = await inbox(http, server, "eve")
            assert [i["message"] for i in page["items"]] == ["stay"]
            assert page["counts"] == {"total": 1, "unread": 0, "unseen": 1}
        await eve.close()
        await max_.close()
    finally:
        server.stop()
