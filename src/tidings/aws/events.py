"""The events tidings POSTs to integrations, in API Gateway's Lambda proxy shape, and
what an integration may answer.

A handler written for API Gateway reads the same fields: ``requestContext``
(``routeKey``, ``eventType``, ``connectionId``, ``domainName``, ``stage``, ...),
``queryStringParameters`` and ``headers`` on ``$connect``, ``body`` and
``isBase64Encoded`` on messages, ``disconnectStatusCode`` and
``disconnectReason`` on ``$disconnect``. tidings adds the authenticated user
as ``requestContext.authorizer.principalId``. The token a client connected
with never appears in an event: ``token`` is removed from the query,
``Authorization`` from the headers and ``bearer.<token>`` from the offered
``Sec-WebSocket-Protocol``.

Pure: no I/O, no event loop.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tidings.core.tokens import without_bearer

CONNECT = "CONNECT"
MESSAGE = "MESSAGE"
DISCONNECT = "DISCONNECT"
REDACTED_QUERY = frozenset({"token"})
REDACTED_HEADERS = frozenset({"authorization"})

Event = dict[str, Any]


def new_id() -> str:
    """An id in API Gateway's style (``R1koeHsUtjMFbRw=``) for requests and messages."""
    return base64.b64encode(secrets.token_bytes(10)).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What every event of one connection repeats, fixed at its handshake."""

    connection_id: str
    connected_at: int
    """Unix milliseconds."""
    domain_name: str
    stage: str
    api_id: str
    source_ip: str
    user_agent: str
    principal_id: str
    admin: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    """The handshake's headers, ``Authorization`` already removed."""
    query: tuple[tuple[str, str], ...] = ()
    """The handshake's query parameters, ``token`` already removed."""

    @classmethod
    def of_handshake(
        cls,
        *,
        connection_id: str,
        connected_at: int,
        domain_name: str,
        stage: str,
        api_id: str,
        source_ip: str,
        user_agent: str,
        principal_id: str,
        admin: bool,
        headers: Iterable[tuple[str, str]],
        query: Iterable[tuple[str, str]],
    ) -> ConnectionContext:
        return cls(
            connection_id=connection_id,
            connected_at=connected_at,
            domain_name=domain_name,
            stage=stage,
            api_id=api_id,
            source_ip=source_ip,
            user_agent=user_agent,
            principal_id=principal_id,
            admin=admin,
            headers=tuple(_passed_on(headers)),
            query=tuple((k, v) for k, v in query if k not in REDACTED_QUERY),
        )


def _passed_on(headers: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """The handshake's headers with every trace of the token gone."""
    for name, value in headers:
        lower = name.lower()
        if lower == "sec-websocket-protocol":
            value = without_bearer(value)
            if not value:
                continue
        if lower not in REDACTED_HEADERS:
            yield name, value


def _request_time(ms: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ms / 1000))


def request_context(
    ctx: ConnectionContext,
    *,
    route_key: str,
    event_type: str,
    request_id: str,
    at: int,
    message_id: str | None = None,
) -> Event:
    context: Event = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(at),
        "messageDirection": "IN",
        "stage": ctx.stage,
        "connectedAt": ctx.connected_at,
        "requestTimeEpoch": at,
        "identity": {"sourceIp": ctx.source_ip, "userAgent": ctx.user_agent},
        "requestId": request_id,
        "domainName": ctx.domain_name,
        "connectionId": ctx.connection_id,
        "apiId": ctx.api_id,
        "authorizer": {"principalId": ctx.principal_id, "admin": ctx.admin},
    }
    if message_id is not None:
        context["messageId"] = message_id
    return context


def _single_and_multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return (single or None), (multi or None)


def connect_event(ctx: ConnectionContext, *, request_id: str, at: int) -> Event:
    headers, multi_headers = _single_and_multi(ctx.headers)
    query, multi_query = _single_and_multi(ctx.query)
    return {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": request_context(
            ctx, route_key="$connect", event_type=CONNECT, request_id=request_id, at=at
        ),
        "isBase64Encoded": False,
    }


def message_event(
    ctx: ConnectionContext,
    route_key: str,
    data: bytes,
    *,
    request_id: str,
    message_id: str,
    at: int,
) -> Event:
    """A message: text as is; bytes that are not UTF-8 base64-encoded, as API Gateway does."""
    try:
        body, encoded = data.decode(), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(data).decode(), True
    return {
        "requestContext": request_context(
            ctx,
            route_key=route_key,
            event_type=MESSAGE,
            request_id=request_id,
            at=at,
            message_id=message_id,
        ),
        "body": body,
        "isBase64Encoded": encoded,
    }


def disconnect_event(
    ctx: ConnectionContext, code: int, reason: str, *, request_id: str, at: int
) -> Event:
    context = request_context(
        ctx, route_key="$disconnect", event_type=DISCONNECT, request_id=request_id, at=at
    )
    context["disconnectStatusCode"] = code
    context["disconnectReason"] = reason
    return {
        "headers": {"Host": ctx.domain_name},
        "multiValueHeaders": {"Host": [ctx.domain_name]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def error_frame(message: str, connection_id: str, request_id: str) -> bytes:
    """What API Gateway sends a client when a route's integration fails."""
    return orjson.dumps(
        {"message": message, "connectionId": connection_id, "requestId": request_id}
    )


class BadAnswer(Exception):
    """The integration's answer is not a Lambda proxy result; the message says why."""


@dataclass(frozen=True, slots=True)
class IntegrationResponse:
    """``{"statusCode": 200, "headers": {...}, "body": "..."}``; ``statusCode``
    defaults to 200. Of the headers, only ``$connect``'s
    ``Sec-WebSocket-Protocol`` reaches the client (the subprotocol chosen)."""

    status_code: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Names lower-cased; values that are not strings are dropped."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @classmethod
    def parse(cls, raw: bytes) -> IntegrationResponse:
        """The answer of an integration that replied 2xx; an empty answer or ``null`` is 200."""
        if not raw.strip():
            return cls()
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadAnswer(f"the answer is not JSON: {raw[:80]!r}") from None
        if answer is None:
            return cls()
        if not isinstance(answer, dict):
            raise BadAnswer(f"the answer is not a JSON object: {raw[:80]!r}")
        status = answer.get("statusCode", 200)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise BadAnswer(f"statusCode must be an HTTP status, not {status!r:.40}")
        given = answer.get("headers")
        headers = (
            {str(k).lower(): v for k, v in given.items() if isinstance(v, str)}
            if isinstance(given, dict)
            else {}
        )
        body = answer.get("body")
        if body is None:
            return cls(status, headers=headers)
        if not isinstance(body, str):
            return cls(status, orjson.dumps(body), headers)
        if answer.get("isBase64Encoded") is True:
            try:
                return cls(status, base64.b64decode(body, validate=True), headers)
            except binascii.Error:
                raise BadAnswer("isBase64Encoded is true but body is not base64") from None
        return cls(status, body.encode(), headers)
