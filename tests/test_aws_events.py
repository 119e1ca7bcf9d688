"""Events in API Gateway's Lambda proxy shape, and integration answers."""

from __future__ import annotations

import base64
import json

import pytest

from tidings.aws.events import (
    BadAnswer,
    ConnectionContext,
    IntegrationResponse,
    connect_event,
    disconnect_event,
    error_frame,
    message_event,
    new_id,
)

AT = 1_705_751_700_453


def context(**overrides: object) -> ConnectionContext:
    fields: dict[str, object] = {
        "connection_id": "abcdefgh12345678",
        "connected_at": AT - 1000,
        "domain_name": "127.0.0.1:8000",
        "stage": "production",
        "api_id": "tidings",
        "source_ip": "127.0.0.1",
        "user_agent": "test-agent",
        "principal_id": "bob",
        "admin": False,
        "headers": [
            ("Host", "127.0.0.1:8000"),
            ("Authorization", "Bearer secret.jwt.value"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
        ],
        "query": [("userId", "bob"), ("token", "secret.jwt.value"), ("tag", "a"), ("tag", "b")],
    }
    fields.update(overrides)
    return ConnectionContext.of_handshake(**fields)  # type: ignore[arg-type]


def test_connect_event_has_api_gateway_fields_and_never_the_token() -> None:
    event = connect_event(context(), request_id="R1koeHsUtjMFbRw=", at=AT)
    assert "secret.jwt.value" not in json.dumps(event)
    assert event["queryStringParameters"] == {"userId": "bob", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"userId": ["bob"], "tag": ["a", "b"]}
    assert event["headers"] == {"Host": "127.0.0.1:8000", "X-Multi": "2"}
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert "Authorization" not in event["multiValueHeaders"]
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": "R1koeHsUtjMFbRw=",
        "requestTime": "20/Jan/2024:11:55:00 +0000",
        "messageDirection": "IN",
        "stage": "production",
        "connectedAt": AT - 1000,
        "requestTimeEpoch": AT,
        "identity": {"sourceIp": "127.0.0.1", "userAgent": "test-agent"},
        "requestId": "R1koeHsUtjMFbRw=",
        "domainName": "127.0.0.1:8000",
        "connectionId": "abcdefgh12345678",
        "apiId": "tidings",
        "authorizer": {"principalId": "bob", "admin": False},
    }


def test_connect_event_without_query_has_null_parameters() -> None:
    event = connect_event(context(query=[]), request_id="r", at=AT)
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_message_event_text_and_binary() -> None:
    event = message_event(
        context(), "sendNotification", b'{"action":"x"}', request_id="r", message_id="m", at=AT
    )
    assert event["body"] == '{"action":"x"}' and event["isBase64Encoded"] is False
    context_ = event["requestContext"]
    assert context_["routeKey"] == "sendNotification" and context_["eventType"] == "MESSAGE"
    assert context_["messageId"] == "m" and context_["requestId"] == "r"
    assert "headers" not in event and "queryStringParameters" not in event
    binary = message_event(
        context(), "$default", b"\xff\x00", request_id="r", message_id="m", at=AT
    )
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"


def test_disconnect_event_carries_the_close_code_and_reason() -> None:
    event = disconnect_event(context(), 1001, "going away", request_id="r", at=AT)
    assert "body" not in event and "queryStringParameters" not in event
    context_ = event["requestContext"]
    assert context_["routeKey"] == "$disconnect" and context_["eventType"] == "DISCONNECT"
    assert context_["disconnectStatusCode"] == 1001
    assert context_["disconnectReason"] == "going away"
    assert context_["authorizer"]["principalId"] == "bob"


def test_error_frame_is_api_gateways() -> None:
    assert json.loads(error_frame("Internal server error", "c1", "r1")) == {
        "message": "Internal server error",
        "connectionId": "c1",
        "requestId": "r1",
    }


def test_ids_look_like_api_gateways() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 16 and i.endswith("=") for i in ids)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", IntegrationResponse(200, None)),
        (b"null", IntegrationResponse(200, None)),
        (b"{}", IntegrationResponse(200, None)),
        (b'{"statusCode":200,"body":"Connected"}', IntegrationResponse(200, b"Connected")),
        (b'{"statusCode":"403"}', IntegrationResponse(403, None)),
        (b'{"statusCode":200,"body":{"a":1}}', IntegrationResponse(200, b'{"a":1}')),
        (
            b'{"statusCode":200,"body":"/w==","isBase64Encoded":true}',
            IntegrationResponse(200, b"\xff"),
        ),
        (
            b'{"headers":{"Sec-WebSocket-Protocol":"chat","X-N":1}}',
            IntegrationResponse(200, None, {"sec-websocket-protocol": "chat"}),
        ),
    ],
)
def test_integration_answers(raw: bytes, expected: IntegrationResponse) -> None:
    assert IntegrationResponse.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"statusCode":99}', "statusCode"),
        (b'{"statusCode":true}', "statusCode"),
        (b'{"statusCode":"ok"}', "statusCode"),
        (b'{"body":"!!","isBase64Encoded":true}', "not base64"),
    ],
)
def test_bad_integration_answers(raw: bytes, message: str) -> None:
    with pytest.raises(BadAnswer, match=message):
        IntegrationResponse.parse(raw)


def test_a_bearer_subprotocol_never_reaches_an_event() -> None:
    offered = [("Sec-WebSocket-Protocol", "tidings.v1, bearer.secret.jwt.value, chat")]
    event = connect_event(context(headers=offered), request_id="r", at=AT)
    assert event["headers"] == {"Sec-WebSocket-Protocol": "tidings.v1, chat"}
    only = [("Sec-WebSocket-Protocol", "bearer.secret.jwt.value"), ("Host", "h")]
    assert connect_event(context(headers=only), request_id="r", at=AT)["headers"] == {"Host": "h"}
