from __future__ import annotations

import orjson
import pytest

from tidings.core.errors import BadRequest, InvalidRoute
from tidings.core.models import Notification
from tidings.core.protocol import (
    Ping,
    SendNotification,
    ack_frame,
    caught_up_frame,
    error_frame,
    notification_frame,
    parse_client_frame,
)
from tidings.core.publish import Limits


def test_seed_send_notification_frame_parses() -> None:
    action = parse_client_frame(b'{"action":"sendNotification","userId":"bob","message":"hi"}')
    assert action == SendNotification(user_id="bob", message="hi")


def test_all_optional_fields() -> None:
    raw = orjson.dumps(
        {
            "action": "sendNotification",
            "userId": "bob",
            "message": "hi",
            "data": {"k": [1]},
            "requestId": "r1",
            "idempotencyKey": "k1",
        }
    )
    assert parse_client_frame(raw) == SendNotification("bob", "hi", {"k": [1]}, "r1", "k1")


def test_ping_action() -> None:
    assert parse_client_frame('{"action":"ping","requestId":7}') == Ping(request_id=7)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"action":"sendNotification","message":"hi"}', "userId"),
        (b'{"action":"sendNotification","userId":"","message":"hi"}', "userId"),
        (b'{"action":"sendNotification","userId":5,"message":"hi"}', "userId"),
        (b'{"action":"sendNotification","userId":"bob"}', "message must be a string"),
        (b'{"action":"sendNotification","userId":"bob","message":3}', "message must be"),
        (b'{"action":"sendNotification","userId":"bob","message":"x","data":[1]}', "data"),
        (b'{"action":"sendNotification","userId":"bob","message":"x","idempotencyKey":1}', "idem"),
        (b'{"action":"sendNotification","userId":"b","message":"x","requestId":{"a":1}}', "reque"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_frames_say_what_is_wrong(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_client_frame(raw)
    assert fragment in info.value.message
    assert info.value.code == "bad_request"


def test_limits_are_enforced_and_request_id_echoed() -> None:
    limits = Limits(max_message_chars=5, max_data_bytes=10)
    with pytest.raises(BadRequest) as info:
        parse_client_frame(
            b'{"action":"sendNotification","userId":"b","message":"123456","requestId":"r9"}',
            limits,
        )
    assert "limit is 5" in info.value.message
    assert info.value.request_id == "r9"
    with pytest.raises(BadRequest, match="data is"):
        parse_client_frame(
            b'{"action":"sendNotification","userId":"b","message":"1","data":{"k":"0123456789"}}',
            limits,
        )


def test_unknown_action_is_invalid_route_with_the_seed_words() -> None:
    for raw in (b'{"action":"nope","requestId":"r2"}', b"{}"):
        with pytest.raises(InvalidRoute) as info:
            parse_client_frame(raw)
        assert info.value.message == "Invalid route"
    assert info.value.request_id is None


def test_server_frames() -> None:
    n = Notification(id="01ABC", user_id="bob", seq=17, message="hi", created_at=0, sender="al")
    frame = orjson.loads(notification_frame(n))
    assert frame == {
        "type": "notification",
        "notificationId": "01ABC",
        "seq": 17,
        "userId": "bob",
        "sender": "al",
        "message": "hi",
        "data": {},
        "tags": [],
        "createdAt": "1970-01-01T00:00:00.000Z",
        "expiresAt": None,
    }
    assert orjson.loads(ack_frame("r1", "01ABC", 17)) == {
        "type": "ack",
        "requestId": "r1",
        "notificationId": "01ABC",
        "seq": 17,
    }
    assert orjson.loads(error_frame("bad_request", "x")) == {
        "type": "error",
        "code": "bad_request",
        "message": "x",
    }
    assert orjson.loads(caught_up_frame(4, complete=False)) == {
        "type": "caughtUp",
        "seq": 4,
        "complete": False,
    }


def test_text_no_store_can_keep_is_refused() -> None:
    from tidings.core.publish import check_text

    assert check_text("ok ✓", "message") == "ok ✓"
    with pytest.raises(BadRequest, match="NUL"):
        check_text("a\x00b", "userId")
    with pytest.raises(BadRequest, match="surrogates"):
        check_text("a\ud800", "message")
