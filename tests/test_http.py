"""The HTTP API against a real server process."""

from __future__ import annotations

import asyncio

import httpx

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until


def admin_headers(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('backend', admin=True)}"}


async def test_publish_to_one_user_is_stored_pushed_and_acked_after_commit(
    server: ServerProcess,
) -> None:
    bob = await open_ws(server.ws_url, token=server.token("bob"))
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/v1/notifications",
            json={"userId": "bob", "message": "from backend", "data": {"url": "/x"}},
            headers=admin_headers(server),
        )
    assert response.status_code == 201
    body = response.json()
    assert body["recipients"] == [{"userId": "bob", "seq": 1}] and body["duplicate"] is False
    frame = await recv_json(bob)
    assert frame["notificationId"] == body["notificationId"]
    assert frame["data"] == {"url": "/x"} and frame["sender"] == "backend"
    assert frame["createdAt"] == body["createdAt"]
    await bob.close()


async def test_publish_to_a_list_gives_one_id_and_a_seq_per_recipient(
    server: ServerProcess,
) -> None:
    conns = {u: await open_ws(server.ws_url, token=server.token(u)) for u in ("a", "b", "c")}
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post(
            "/v1/notifications",
            json={"userId": "b", "message": "first"},
            headers=admin_headers(server),
        )
        response = await http.post(
            "/v1/notifications",
            json={"userIds": ["a", "b", "c", "a"], "message": "all"},
            headers=admin_headers(server),
        )
    body = response.json()
    assert response.status_code == 201
    assert body["recipients"] == [
        {"userId": "a", "seq": 1},
        {"userId": "b", "seq": 2},
        {"userId": "c", "seq": 1},
    ]
    assert (await recv_json(conns["b"]))["message"] == "first"
    for user, ws in conns.items():
        frame = await recv_json(ws)
        assert frame["notificationId"] == body["notificationId"] and frame["userId"] == user
        await ws.close()


async def test_idempotency_key_header_returns_the_same_response(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        headers = {**admin_headers(server), "Idempotency-Key": "order-42"}
        body = {"userId": "bob", "message": "shipped"}
        responses = await asyncio.gather(
            *(http.post("/v1/notifications", json=body, headers=headers) for _ in range(20))
        )
        ids = {r.json()["notificationId"] for r in responses}
        assert len(ids) == 1 and {r.status_code for r in responses} == {201}
        assert sum(not r.json()["duplicate"] for r in responses) == 1
        conflict = await http.post(
            "/v1/notifications", json={**body, "message": "other"}, headers=headers
        )
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "idempotency_conflict"
    bob = await open_ws(server.ws_url, token=server.token("bob"), since=0)
    frames = await recv_until(bob, "caughtUp")
    assert len(frames) == 2  # one notification, then caughtUp
    await bob.close()


async def test_auth_and_validation_errors_are_json_and_store_nothing(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"userId": "bob", "message": "x"}
        cases = [
            ({}, body, 401, "unauthorized"),
            ({"Authorization": "Bearer junk"}, body, 401, "unauthorized"),
            ({"Authorization": f"Bearer {server.token('bob')}"}, body, 403, "forbidden"),
            (admin_headers(server), {"message": "x"}, 400, "bad_request"),
            (
                admin_headers(server),
                {"userId": "b", "userIds": ["c"], "message": "x"},
                400,
                "bad_request",
            ),
            (admin_headers(server), {"userId": "b", "message": 5}, 400, "bad_request"),
            (
                admin_headers(server),
                {"userId": "b", "message": "x", "extra": 1},
                400,
                "bad_request",
            ),
            (admin_headers(server), {"userId": "b", "message": "x" * 40_000}, 400, "bad_request"),
            (
                admin_headers(server),
                {"userId": "b", "message": "x", "data": {"k": "v" * 20_000}},
                400,
                "bad_request",
            ),
            (admin_headers(server), {"userIds": [], "message": "x"}, 400, "bad_request"),
        ]
        for headers, payload, status, code in cases:
            response = await http.post("/v1/notifications", json=payload, headers=headers)
            assert response.status_code == status, (payload, response.text)
            error = response.json()["error"]
            assert error["code"] == code and error["message"]
        bad_json = await http.post(
            "/v1/notifications",
            content=b"{nope",
            headers={**admin_headers(server), "content-type": "application/json"},
        )
        assert bad_json.status_code == 400
        form = await http.post(  # what curl -d sends without -H "Content-Type: ..."
            "/v1/notifications",
            content=b'{"userId": "bob", "message": "x"}',
            headers={**admin_headers(server), "content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 400, form.text
        assert form.json()["error"]["message"] == (
            "the body must be JSON, sent with Content-Type: application/json,"
            " not 'application/x-www-form-urlencoded'"
        )
        missing = await http.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for user in ("bob", "b", "c"):
        ws = await open_ws(server.ws_url, token=server.token(user), since=0)
        assert await recv_json(ws) == {
            "type": "caughtUp",
            "seq": 0,
            "complete": True,
            "topics": {"everyone": 0},
        }
        await ws.close()


async def test_health_readiness_and_openapi(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready" and ready.json()["store"] == "ok"
        spec = (await http.get("/openapi.json")).json()
        assert "/v1/notifications" in spec["paths"]
        assert (await http.get("/docs")).status_code == 200
