"""The inbox over HTTP and WebSocket, against a real server process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until, send_json


def auth(server: ServerProcess, user: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, admin=admin)}"}


async def publish(
    http: httpx.AsyncClient, server: ServerProcess, user: str, message: str, **extra: Any
) -> dict[str, Any]:
    response = await http.post(
        "/v1/notifications",
        json={"userId": user, "message": message, **extra},
        headers=auth(server, "ops", admin=True),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def walk(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    """Every item id of an inbox, page by page."""
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"after": cursor} if cursor else {})}
        page = (await http.get("/v1/users/me/inbox", params=query, headers=headers)).json()
        seen += [item["notificationId"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return seen


async def test_pagination_walks_every_notification_once_while_new_ones_arrive(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = [
            (await publish(http, server, "bob", f"m{i}"))["notificationId"] for i in range(60)
        ]
        headers = auth(server, "bob")
        walked: list[str] = []
        cursor = None
        arriving: list[str] = []
        while True:
            query = {"limit": 7, **({"after": cursor} if cursor else {})}
            page = (await http.get("/v1/users/me/inbox", params=query, headers=headers)).json()
            walked += [item["notificationId"] for item in page["items"]]
            # New notifications land between pages.
            arriving.append((await publish(http, server, "bob", "new"))["notificationId"])
            cursor = page["next"]
            if cursor is None:
                break
        assert walked == sorted(before, reverse=True)  # each once, newest first
        assert set(walked).isdisjoint(arriving)
        oldest_first = await walk(http, headers, order="oldest", limit=13)
        assert oldest_first == sorted(before + arriving)


async def test_filters_counts_and_tabs(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ids = [
            (await publish(http, server, "bob", f"m{i}", tags=["billing"] if i % 3 == 0 else []))[
                "notificationId"
            ]
            for i in range(9)
        ]
        headers = auth(server, "bob")
        await http.post("/v1/users/me/notifications/read", json={"ids": ids[:4]}, headers=headers)
        await http.post(
            "/v1/users/me/notifications/archive", json={"ids": ids[:2]}, headers=headers
        )
        page = (await http.get("/v1/users/me/inbox", headers=headers)).json()
        assert page["counts"] == {"total": 7, "unread": 5, "unseen": 7}
        assert [i["notificationId"] for i in page["items"]] == ids[:1:-1]

        async def listed(**params: Any) -> list[str]:
            return sorted(await walk(http, headers, **params))

        assert await listed(read="false") == sorted(ids[4:])
        assert await listed(archived="only") == sorted(ids[:2])
        assert await listed(archived="include") == sorted(ids)
        assert await listed(tags="billing", archived="include") == sorted([ids[0], ids[3], ids[6]])
        tabs = await http.post(
            "/v1/users/me/counts",
            headers=headers,
            json={
                "filters": {
                    "all": {},
                    "unread": {"read": False},
                    "archived": {"archived": "only"},
                    "billing": {"tags": ["billing"]},
                    "future": {"createdAfter": "2999-01-01T00:00:00Z"},
                }
            },
        )
        assert tabs.json() == {
            "counts": {"all": 7, "unread": 5, "archived": 2, "billing": 2, "future": 0}
        }


async def test_counts_stay_exact_under_concurrent_marking_from_two_connections(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ids = [(await publish(http, server, "bob", f"m{i}"))["notificationId"] for i in range(200)]
    tab1 = await open_ws(server.ws_url, token=server.token("bob"))
    tab2 = await open_ws(server.ws_url, token=server.token("bob"))

    async def marker(ws: Any, chunk: list[str], action: str) -> int:
        for i in range(0, len(chunk), 5):
            await send_json(ws, {"action": action, "ids": chunk[i : i + 5], "requestId": i})
        return len(range(0, len(chunk), 5))

    async def settle(ws: Any, acks: int) -> dict[str, Any]:
        """Read until every action of this tab is acked and the pushes stop coming;
        returns the last inbox change seen."""
        last: dict[str, Any] = {}
        while True:
            try:
                frame = await recv_json(ws, timeout=1.0 if acks <= 0 else 10)
            except TimeoutError:
                return last
            if frame["type"] == "ack":
                acks -= 1
            elif frame["type"] == "inbox":
                last = frame

    # Overlapping sets: both tabs mark ids[50:150]; each id must count once.
    sent = await asyncio.gather(
        marker(tab1, ids[:150], "markRead"),
        marker(tab2, ids[50:], "markRead"),
        marker(tab2, ids[100:120], "archive"),
    )
    finals = await asyncio.gather(settle(tab1, sent[0]), settle(tab2, sent[1] + sent[2]))
    async with httpx.AsyncClient(base_url=server.url) as http:
        counts = (await http.get("/v1/users/me/counts", headers=auth(server, "bob"))).json()
    assert counts == {"total": 180, "unread": 0, "unseen": 180}
    # Both tabs saw the same final badge, pushed with the last change.
    for final in finals:
        assert {k: final[k] for k in ("total", "unread", "unseen")} == counts
    for ws in (tab1, tab2):
        await ws.close()


async def test_mark_all_up_to_id_leaves_a_racing_newer_notification_unread(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ids = [(await publish(http, server, "bob", f"m{i}"))["notificationId"] for i in range(20)]
        headers = auth(server, "bob")
        marking = http.post(
            "/v1/users/me/notifications/read", json={"upTo": ids[-1]}, headers=headers
        )
        racing = publish(http, server, "bob", "racing")
        marked, newer = await asyncio.gather(marking, racing)
        assert marked.json()["changed"] == 20
        unread = await walk(http, headers, read="false")
        assert unread == [newer["notificationId"]]
        assert (await http.get("/v1/users/me/counts", headers=headers)).json()["unread"] == 1


async def test_a_user_cannot_touch_another_users_inbox(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        bob_id = (await publish(http, server, "bob", "private"))["notificationId"]
        alice = auth(server, "alice")
        for method, path, body in [
            ("GET", "/v1/users/bob/inbox", None),
            ("GET", "/v1/users/bob/counts", None),
            ("GET", "/v1/users/bob/history", None),
            ("POST", "/v1/users/bob/counts", {"filters": {"a": {}}}),
            ("POST", "/v1/users/bob/notifications/read", {"ids": [bob_id]}),
            ("DELETE", f"/v1/users/bob/notifications/{bob_id}", None),
            ("DELETE", "/v1/users/bob", None),
            ("GET", "/v1/users/bob/export", None),
        ]:
            response = await http.request(method, path, json=body, headers=alice)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        # Alice naming bob's id on her own inbox changes nothing of bob's.
        mine = await http.post(
            "/v1/users/me/notifications/read", json={"ids": [bob_id]}, headers=alice
        )
        assert mine.json()["changed"] == 0
        gone = await http.delete(f"/v1/users/me/notifications/{bob_id}", headers=alice)
        assert gone.status_code == 404
        ws = await open_ws(server.ws_url, token=server.token("alice"))
        await send_json(ws, {"action": "markRead", "ids": [bob_id], "requestId": 1})
        assert await recv_json(ws) == {"type": "ack", "changed": 0, "requestId": 1}
        await ws.close()
        bob = (await http.get("/v1/users/me/counts", headers=auth(server, "bob"))).json()
        assert bob == {"total": 1, "unread": 1, "unseen": 1}
        # An admin may act for anyone.
        admin = auth(server, "ops", admin=True)
        listed = (await http.get("/v1/users/bob/inbox", headers=admin)).json()
        assert [i["notificationId"] for i in listed["items"]] == [bob_id]


async def test_bad_queries_are_clear_4xx_and_change_nothing(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for i in range(3):
            await publish(http, server, "bob", f"m{i}")
        bob, carol = auth(server, "bob"), auth(server, "carol")
        page = (await http.get("/v1/users/me/inbox", params={"limit": 1}, headers=bob)).json()
        cursor = page["next"]
        tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
        cases: list[tuple[str, str, dict[str, str], Any]] = [
            ("GET", "/v1/users/me/inbox?limit=0", bob, None),
            ("GET", "/v1/users/me/inbox?limit=201", bob, None),
            ("GET", "/v1/users/me/inbox?archived=sometimes", bob, None),
            ("GET", "/v1/users/me/inbox?order=sideways", bob, None),
            ("GET", "/v1/users/me/inbox?read=maybe", bob, None),
            ("GET", "/v1/users/me/inbox?createdAfter=yesterday", bob, None),
            ("GET", f"/v1/users/me/inbox?after={tampered}", bob, None),
            ("GET", f"/v1/users/me/inbox?after={cursor}", carol, None),
            ("GET", f"/v1/users/me/inbox?after={cursor}&read=false", bob, None),
            ("POST", "/v1/users/me/counts", bob, {"filters": {"x": {"colour": "red"}}}),
            ("POST", "/v1/users/me/counts", bob, {"filters": {}}),
            ("POST", "/v1/users/me/notifications/read", bob, {"ids": ["nope"]}),
            ("POST", "/v1/users/me/notifications/read", bob, {}),
            ("POST", "/v1/users/me/notifications/read", bob, {"ids": [], "upTo": None}),
            (
                "POST",
                "/v1/notifications",
                auth(server, "ops", admin=True),
                {"userId": "bob", "message": "x", "expiresAt": "2000-01-01T00:00:00Z"},
            ),
            (
                "POST",
                "/v1/notifications",
                auth(server, "ops", admin=True),
                {"userId": "bob", "message": "x", "tags": ["x" * 65]},
            ),
        ]
        for method, path, headers, body in cases:
            response = await http.request(method, path, json=body, headers=headers)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"]["message"], path
        counts = (await http.get("/v1/users/me/counts", headers=bob)).json()
        assert counts == {"total": 3, "unread": 3, "unseen": 3}
        ws = await open_ws(server.ws_url, token=server.token("bob"))
        await send_json(ws, {"action": "markRead", "requestId": "q"})
        error = await recv_json(ws)
        assert error["code"] == "bad_request" and error["requestId"] == "q"
        await send_json(ws, {"action": "archive", "ids": ["zzz"]})
        assert (await recv_json(ws))["code"] == "bad_request"
        await ws.close()


async def test_erasure_leaves_nothing_and_export_has_everything(server: ServerProcess) -> None:
    admin = auth(server, "ops", admin=True)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for i in range(5):
            await publish(http, server, "bob", f"secret {i}", data={"i": i})
        exported = (await http.get("/v1/users/bob/export", headers=admin)).json()
        assert [n["message"] for n in exported["notifications"]] == [
            f"secret {i}" for i in range(5)
        ]
        assert (await http.delete("/v1/users/bob", headers=admin)).json() == {"erased": 5}
        after = (await http.get("/v1/users/bob/export", headers=admin)).json()
        assert after["notifications"] == [] and after["counts"]["total"] == 0
        assert (await http.get("/v1/users/bob/inbox", headers=admin)).json()["items"] == []
        # The stream's seq is never reused after erasure.
        again = await publish(http, server, "bob", "after")
        assert again["recipients"] == [{"userId": "bob", "seq": 6}]
    ws = await open_ws(server.ws_url, token=server.token("bob"), since=0)
    frames = await recv_until(ws, "caughtUp")
    assert [f.get("message") for f in frames] == ["after", None]
    assert frames[-1]["complete"] is False  # the history before was cut
    await ws.close()


async def test_retention_hides_expired_at_once_and_the_sweeper_pushes_it(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "d", "--sweep-interval", "0.2").start()
    try:
        bob = await open_ws(server.ws_url, token=server.token("bob"))
        async with httpx.AsyncClient(base_url=server.url) as http:
            short = await publish(http, server, "bob", "short-lived", expiresAt=_in(1.0))
            keep = await publish(http, server, "bob", "kept")
            headers = auth(server, "bob")
            assert (await http.get("/v1/users/me/counts", headers=headers)).json()["unread"] == 2
            frames = [await recv_json(bob), await recv_json(bob)]
            assert frames[0]["expiresAt"] is not None
            change = await recv_json(bob, timeout=5)
            assert change["type"] == "inbox"
            assert change["change"] == {"action": "expire", "ids": [short["notificationId"]]}
            assert change["unread"] == 1 and change["total"] == 1
            listed = await walk(http, headers, archived="include")
            assert listed == [keep["notificationId"]]
        replay = await open_ws(server.ws_url, token=server.token("bob"), since=0)
        frames = await recv_until(replay, "caughtUp")
        assert [f.get("message") for f in frames] == ["kept", None]
        assert frames[-1] == {
            "type": "caughtUp",
            "seq": 2,
            "complete": False,
            "topics": {"everyone": 0},
        }
        resumed = await open_ws(server.ws_url, token=server.token("bob"), since=1)
        assert (await recv_until(resumed, "caughtUp"))[-1]["complete"] is True
        for ws in (bob, replay, resumed):
            await ws.close()
    finally:
        server.stop()


async def test_expired_but_unswept_is_already_invisible(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "d", "--sweep-interval", "3600").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await publish(http, server, "bob", "brief", expiresAt=_in(0.5))
            await asyncio.sleep(0.8)
            headers = auth(server, "bob")
            assert (await http.get("/v1/users/me/counts", headers=headers)).json() == {
                "total": 0,
                "unread": 0,
                "unseen": 0,
            }
            assert await walk(http, headers) == []
            history = (await http.get("/v1/users/me/history", headers=headers)).json()
            assert history == {"items": [], "head": 1}
    finally:
        server.stop()


async def test_default_ttl_applies_when_no_expiry_is_given(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "d", "--default-ttl", "3600").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await publish(http, server, "bob", "x")
            page = (await http.get("/v1/users/me/inbox", headers=auth(server, "bob"))).json()
            assert page["items"][0]["expiresAt"] is not None
    finally:
        server.stop()


async def test_history_fills_a_seq_range(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for i in range(10):
            await publish(http, server, "bob", f"m{i}")
        history = (
            await http.get(
                "/v1/users/me/history",
                params={"afterSeq": 3, "beforeSeq": 7},
                headers=auth(server, "bob"),
            )
        ).json()
        assert [n["seq"] for n in history["items"]] == [4, 5, 6]
        assert history["head"] == 10 and history["items"][0]["type"] == "notification"


async def test_origins_allow_list_for_cors_and_websocket(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "d", "--allowed-origins", "https://app.example").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            good = await http.options(
                "/v1/users/me/inbox",
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert good.headers["access-control-allow-origin"] == "https://app.example"
            bad = await http.options(
                "/v1/users/me/inbox",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert "access-control-allow-origin" not in bad.headers
        from websockets.asyncio.client import connect

        token = server.token("bob")
        ws = await connect(f"{server.ws_url}?token={token}", origin="https://app.example")
        await ws.close()
        with pytest.raises(InvalidStatus) as info:
            await connect(f"{server.ws_url}?token={token}", origin="https://evil.example")
        assert info.value.response.status_code == 403
        ws = await connect(f"{server.ws_url}?token={token}")  # no Origin: not a browser
        await ws.close()
    finally:
        server.stop()


def _in(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
