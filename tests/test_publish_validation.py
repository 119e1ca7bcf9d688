"""One validator for every way in: what cannot be stored, shown and read back
is refused before anything is stored, over HTTP and WebSocket alike; a stored
row that cannot be shown is shown without its data, never failing a read."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server import ServerProcess
from tests.test_store_contract import admin_fetch, admin_script, pg_url, schema_of
from tests.wsclient import open_ws, recv_json, recv_until
from tidings.core.errors import BadRequest
from tidings.core.inbox import InboxFilter, InboxQuery
from tidings.core.models import InboxItem
from tidings.core.protocol import notification_frame, parse_client_frame
from tidings.core.publish import MAX_DATA_DEPTH, check_data, new_request, stored_data
from tidings.store import open_store

NOW = 1_800_000_000_000
__all__ = ["pg_url"]


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with ``depth`` objects in all."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def deep_json(depth: int) -> str:
    """``nested(depth)`` as JSON text (deeper than the JSON encoder goes)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


async def send(ws: Any, frame: dict[str, Any]) -> None:
    """Encoded by the standard library, which goes deeper than the server's encoder."""
    await ws.send(json.dumps(frame))


def admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('backend', admin=True)}"}


async def history(server: ServerProcess, user: str) -> list[dict[str, Any]]:
    ws = await open_ws(server.ws_url, token=server.token(user), since=0)
    frames = await recv_until(ws, "caughtUp")
    await ws.close()
    return frames


async def assert_reads_answer(http: httpx.AsyncClient, server: ServerProcess, user: str) -> None:
    own = {"Authorization": f"Bearer {server.token(user)}"}
    for path, headers in (("inbox", own), ("history", own), ("export", admin(server))):
        answer = await http.get(f"/v1/users/{user}/{path}", headers=headers)
        assert answer.status_code == 200, (path, answer.text)


# -- the validator, without a server ----------------------------------------


def test_data_depth_is_capped_below_what_any_frame_can_encode() -> None:
    assert check_data(nested(MAX_DATA_DEPTH)) == nested(MAX_DATA_DEPTH)
    for depth in (MAX_DATA_DEPTH + 1, 254, 600):
        with pytest.raises(BadRequest, match="nested deeper"):
            check_data(nested(depth))
    deep_list: dict[str, Any] = {"a": []}
    inner = deep_list["a"]
    for _ in range(MAX_DATA_DEPTH):
        inner.append([])
        inner = inner[0]
    with pytest.raises(BadRequest, match="nested deeper"):
        check_data(deep_list)
    # Brackets inside strings are not nesting.
    assert check_data({"text": "{[" * 500}) == {"text": "{[" * 500}


def test_data_that_cannot_be_encoded_is_refused() -> None:
    for data in ({"big": 2**70}, {"s": "\ud800"}, {"x": object()}):
        with pytest.raises(BadRequest, match="data cannot be stored"):
            check_data(data)


def test_expiry_past_the_last_showable_instant_is_refused() -> None:
    last = 253_402_300_799_999
    request = new_request(["bob"], "hi", now_ms=NOW, expires_at=last)
    assert orjson.loads(notification_frame(request.notification_for("bob", 1)))["expiresAt"] == (
        "9999-12-31T23:59:59.999Z"
    )
    with pytest.raises(BadRequest, match="expiresAt is after"):
        new_request(["bob"], "hi", now_ms=NOW, expires_at=last + 1)


@pytest.mark.parametrize("tags", [0, "", {}, False, "a", {"a": 1}, [1], [""], ["x" * 65]])
def test_websocket_tags_of_the_wrong_type_are_refused(tags: object) -> None:
    frame = orjson.dumps(
        {"action": "sendNotification", "userId": "bob", "message": "m", "tags": tags}
    )
    with pytest.raises(BadRequest, match="tag"):
        parse_client_frame(frame)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(st.text(), JSON, max_size=4) | st.builds(nested, st.integers(1, 300)),
    message=st.text(max_size=50),
    tags=st.lists(st.text(max_size=70), max_size=20) | st.just(0) | st.just(""),
    expires=st.none() | st.integers(NOW - 10, 300_000_000_000_000),
)
def test_whatever_is_accepted_can_be_encoded_in_every_frame(
    data: Any, message: str, tags: Any, expires: int | None
) -> None:
    """The class of bug, not one input: a request the validator accepts always
    encodes as a frame, an inbox answer and a page of answers."""
    try:
        request = new_request(
            ["bob"], message, now_ms=NOW, data=data, tags=tags, expires_at=expires
        )
    except BadRequest:
        return
    notification = request.notification_for("bob", 1)
    orjson.loads(notification_frame(notification))
    orjson.dumps({"items": [InboxItem(notification).to_json()], "counts": {}})
    stored = orjson.dumps(request.data).decode() if request.data is not None else None
    assert stored_data(stored, request.id) == request.data


def test_a_stored_row_that_cannot_be_shown_is_shown_without_its_data() -> None:
    assert stored_data(deep_json(300), "x") is None
    assert stored_data(b"{not json", "x") is None
    assert stored_data(b"[1, 2]", "x") is None
    assert stored_data(b'{"ok": 1}', "x") == {"ok": 1}


# -- over the wire ------------------------------------------------------------


async def test_http_publish_of_unstorable_input_is_a_400_and_stores_nothing(
    server: ServerProcess,
) -> None:
    bad = [
        {"userId": "bob", "message": "deep", "data": nested(254)},
        {"userId": "bob", "message": "deep", "data": nested(MAX_DATA_DEPTH + 1)},
        {"userId": "bob", "message": "late", "expiresAt": "9999-12-31T23:59:59-05:00"},
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for body in bad:
            response = await http.post("/v1/notifications", json=body, headers=admin(server))
            assert response.status_code == 400, (body.get("expiresAt"), response.text)
            assert response.json()["error"]["code"] == "bad_request"
        ok = await http.post(
            "/v1/notifications",
            json={"userId": "bob", "message": "fine", "data": nested(MAX_DATA_DEPTH)},
            headers=admin(server),
        )
        assert ok.status_code == 201
        await assert_reads_answer(http, server, "bob")
    frames = await history(server, "bob")
    assert [f["message"] for f in frames if f["type"] == "notification"] == ["fine"]


async def test_websocket_send_of_unstorable_input_stores_nothing_and_the_victim_keeps_receiving(
    server: ServerProcess,
) -> None:
    victim = await open_ws(server.ws_url, token=server.token("victim"), since=0)
    assert (await recv_json(victim))["type"] == "caughtUp"
    attacker = await open_ws(server.ws_url, token=server.token("mallory"))
    bad: list[dict[str, Any]] = [
        {"data": nested(254)},
        {"data": nested(MAX_DATA_DEPTH + 1)},
        *({"tags": tags} for tags in (0, "", {}, False)),
    ]
    for number, extra in enumerate(bad):
        await send(
            attacker,
            {
                "action": "sendNotification",
                "userId": "victim",
                "message": "x",
                "requestId": number,
                **extra,
            },
        )
        reply = await recv_json(attacker)
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert reply["requestId"] == number
    await send(
        attacker,
        {"action": "sendNotification", "userId": "victim", "message": "ok", "requestId": "last"},
    )
    ack = await recv_json(attacker)
    assert ack["type"] == "ack" and ack["seq"] == 1
    pushed = await recv_json(victim)
    assert pushed["message"] == "ok" and pushed["seq"] == 1
    await attacker.close()
    await victim.close()
    stored = [f for f in await history(server, "victim") if f["type"] == "notification"]
    assert [f["notificationId"] for f in stored] == [ack["notificationId"]]


async def test_stored_rows_equal_acked_recipients_under_mixed_valid_and_invalid_sends(
    server: ServerProcess,
) -> None:
    """Every answer is either an ack (stored) or an error (nothing stored)."""
    senders = [await open_ws(server.ws_url, token=server.token(f"s{i}")) for i in range(4)]
    bad_data = [nested(300), nested(MAX_DATA_DEPTH + 1), {"s": "x" * 20_000}]
    bad_tags: list[object] = [0, "", {}, False, [""]]

    async def barrage(ws: Any, index: int) -> list[str]:
        acked = []
        for n in range(60):
            frame: dict[str, Any] = {
                "action": "sendNotification",
                "userId": "target",
                "message": f"{index}-{n}",
                "requestId": n,
            }
            if n % 3 == 0:
                frame["data"] = bad_data[n % len(bad_data)]
            elif n % 3 == 1:
                frame["tags"] = bad_tags[n % len(bad_tags)]
            await send(ws, frame)
        for _ in range(60):
            reply = await recv_json(ws)
            if reply["type"] == "ack":
                acked.append(reply["notificationId"])
            else:
                assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        return acked

    results = await asyncio.gather(*(barrage(ws, i) for i, ws in enumerate(senders)))
    acked = sorted(i for ids in results for i in ids)
    assert acked, "some sends were valid"
    stored = sorted(
        f["notificationId"] for f in await history(server, "target") if f["type"] == "notification"
    )
    assert stored == acked
    for ws in senders:
        await ws.close()


async def test_a_stored_row_that_cannot_be_shown_does_not_break_reads(
    server: ServerProcess,
) -> None:
    """A row written before such data was refused (put in by hand here): the
    inbox, history, export and replay answer, showing it without its data."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        for message in ("before", "poisoned", "after"):
            response = await http.post(
                "/v1/notifications",
                json={"userId": "bob", "message": message, "data": {"k": 1}},
                headers=admin(server),
            )
            assert response.status_code == 201
        with sqlite3.connect(Path(server.data_dir) / "tidings.db", timeout=10) as db:
            db.execute(
                "UPDATE notifications SET data = ? WHERE user_id = 'bob' AND message = 'poisoned'",
                (deep_json(300),),
            )
        bob = {"Authorization": f"Bearer {server.token('bob')}"}
        await assert_reads_answer(http, server, "bob")
        inbox = await http.get("/v1/users/bob/inbox", headers=bob)
        assert inbox.status_code == 200
        items = {item["message"]: item["data"] for item in inbox.json()["items"]}
        assert items == {"before": {"k": 1}, "poisoned": {}, "after": {"k": 1}}
    frames = await history(server, "bob")
    assert [f.get("message") for f in frames] == ["before", "poisoned", "after", None]
    assert frames[-1]["type"] == "caughtUp"
    assert "stored data cannot be shown" in server.log()


# -- the upgrade that repairs rows stored before the rule -----------------------


async def poison_then_upgrade(store_url: str, poison: Any) -> list[InboxItem]:
    """Store three notifications, make one's data too deep by hand as an older
    version could have, step the schema back, and open the store again."""
    store = open_store(store_url)
    await store.open()
    try:
        for message in ("before", "poisoned", "after"):
            await store.append(
                new_request(["bob"], message, now_ms=time.time_ns() // 1_000_000, data={"k": 1})
            )
    finally:
        await store.close()
    await poison(deep_json(300))
    store = open_store(store_url)
    await store.open()
    try:
        items, _ = await store.list_inbox("bob", InboxQuery(InboxFilter()))
        page = await store.read_stream("bob", after_seq=0)
        assert [n.data for n in page.items] == [{"k": 1}, None, {"k": 1}]
        return items
    finally:
        await store.close()


async def test_upgrade_removes_data_too_deep_to_show_on_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"

    async def poison(raw: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE notifications SET data = ? WHERE message = 'poisoned'", (raw,))
            db.execute("UPDATE schema_version SET version = 4")
            db.execute("DROP TABLE revocations")  # a version-4 database has none

    with caplog.at_level(logging.WARNING, logger="tidings.store"):
        items = await poison_then_upgrade(f"sqlite:///{path}", poison)
    assert {i.notification.message: i.notification.data for i in items}["poisoned"] is None
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT message, data FROM notifications ORDER BY seq").fetchall()
    assert rows == [("before", '{"k":1}'), ("poisoned", None), ("after", '{"k":1}')]
    assert "removed data that could not be shown" in caplog.text
    assert "stored data cannot be shown" not in caplog.text  # repaired, not worked around


async def test_upgrade_removes_data_too_deep_to_show_on_postgres(pg_url: str) -> None:
    schema = schema_of(pg_url)

    async def poison(raw: str) -> None:
        await admin_script(
            f"UPDATE {schema}.notifications SET data = '{raw}' WHERE message = 'poisoned';"
            f" UPDATE {schema}.schema_version SET version = 4;"
            f" DROP TABLE {schema}.revocations"  # a version-4 database has none
        )

    await poison_then_upgrade(pg_url, poison)
    rows = await admin_fetch(f"SELECT message, data FROM {schema}.notifications ORDER BY seq")
    assert [(r["message"], r["data"]) for r in rows] == [
        ("before", '{"k":1}'),
        ("poisoned", None),
        ("after", '{"k":1}'),
    ]
