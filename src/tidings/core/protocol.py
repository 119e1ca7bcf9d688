"""The wire protocol: parse client frames into actions, serialize server frames.

Pure functions over bytes and values, so every rule here is testable without a
socket or an event loop (the python-websockets sans-I/O idea). The route is
the frame's ``action`` field, as in the seed's ``$request.body.action``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tidings.core.errors import BadRequest, InvalidRoute, ProtocolError
from tidings.core.inbox import Mark, check_tags, check_topic
from tidings.core.models import JSONObject, Notification
from tidings.core.publish import DEFAULT_LIMITS, Limits, check_data


@dataclass(frozen=True, slots=True)
class SendNotification:
    """``{"action":"sendNotification","userId":..,"message":..}``"""

    user_id: str
    message: str
    data: JSONObject | None = None
    request_id: str | int | None = None
    idempotency_key: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MarkAction:
    """``markRead`` / ``markUnread`` / ``markSeen`` / ``archive`` / ``unarchive``
    on the user's own inbox, with ``ids`` or ``upTo``."""

    mark: Mark
    request_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class SubscribeAction:
    """``subscribe`` / ``unsubscribe``: the user's own subscription to ``topic``."""

    topic: str
    subscribe: bool
    request_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"action":"ping"}``: an application-level liveness check for clients
    that cannot see WebSocket pings (browsers)."""

    request_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """``{"action":"refreshToken","token":..}``: a new token for the same user,
    so the connection outlives the one it opened with."""

    token: str = field(repr=False)
    request_id: str | int | None = None


ClientAction = SendNotification | MarkAction | SubscribeAction | Ping | RefreshToken

MAX_TOKEN_CHARS = 16 * 1024
"""A token longer than this is refused unread (a provider's JWT is 1 to 2 KB)."""

MARK_ACTIONS = {
    "markRead": "read",
    "markUnread": "unread",
    "markSeen": "seen",
    "archive": "archive",
    "unarchive": "unarchive",
}


def request_id_of(raw: str | bytes | bytearray | memoryview) -> str | int | None:
    """The ``requestId`` of a client message that will not be acted on, if it
    has a valid one, so that its refusal can still be matched to the request."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    request_id = body.get("requestId") if isinstance(body, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
        return None
    if isinstance(request_id, str) and len(request_id) > DEFAULT_LIMITS.max_key_chars:
        return None
    return request_id


def parse_client_frame(raw: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ClientAction:
    """Turn one client message into an action, or raise a ``ProtocolError``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("frame is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("frame must be a JSON object")
    request_id = body.get("requestId")
    if request_id is not None and (
        isinstance(request_id, bool)
        or not isinstance(request_id, (str, int))
        or (isinstance(request_id, str) and len(request_id) > limits.max_key_chars)
    ):
        raise BadRequest(f"requestId must be a string or an integer, got {request_id!r:.60}")
    action = body.get("action")
    if action == "sendNotification":
        return _send_notification(body, request_id, limits)
    if action == "ping":
        return Ping(request_id=request_id)
    if action == "refreshToken":
        token = body.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise BadRequest(
                f"token must be a string of 1 to {MAX_TOKEN_CHARS} characters",
                request_id=request_id,
            )
        return RefreshToken(token, request_id)
    if action in ("subscribe", "unsubscribe"):
        try:
            topic = check_topic(body.get("topic"))
        except BadRequest as exc:
            raise BadRequest(exc.message, request_id=request_id) from None
        return SubscribeAction(topic, action == "subscribe", request_id)
    if isinstance(action, str) and action in MARK_ACTIONS:
        return _mark(MARK_ACTIONS[action], body, request_id)
    raise InvalidRoute("Invalid route", request_id=request_id)


def _send_notification(body: JSONObject, request_id: Any, limits: Limits) -> SendNotification:
    user_id = body.get("userId")
    if not isinstance(user_id, str) or not user_id:
        raise BadRequest("userId must be a non-empty string", request_id=request_id)
    if len(user_id) > limits.max_user_id_chars:
        raise BadRequest(
            f"userId is longer than {limits.max_user_id_chars} characters", request_id=request_id
        )
    message = body.get("message")
    if not isinstance(message, str):
        raise BadRequest("message must be a string", request_id=request_id)
    if len(message) > limits.max_message_chars:
        raise BadRequest(
            f"message is {len(message)} characters, the limit is {limits.max_message_chars}",
            request_id=request_id,
        )
    data = check_data(body.get("data"), limits, request_id=request_id)
    key = body.get("idempotencyKey")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= limits.max_key_chars):
        raise BadRequest(
            f"idempotencyKey must be a string of 1 to {limits.max_key_chars} characters",
            request_id=request_id,
        )
    try:
        raw_tags = body.get("tags")
        tags = check_tags(raw_tags) if raw_tags is not None else ()
    except BadRequest as exc:
        raise BadRequest(exc.message, request_id=request_id) from None
    return SendNotification(user_id, message, data, request_id, key, tags)


def _mark(action: str, body: JSONObject, request_id: Any) -> MarkAction:
    ids, up_to = body.get("ids"), body.get("upTo")
    try:
        if ids is not None and not isinstance(ids, list):
            raise BadRequest("ids must be a list of notification ids")
        mark = Mark(action, ids=tuple(ids) if ids is not None else None, up_to=up_to)
    except BadRequest as exc:
        raise BadRequest(exc.message, request_id=request_id) from None
    return MarkAction(mark, request_id)


# -- server -> client ---------------------------------------------------------


def notification_frame(notification: Notification) -> bytes:
    return orjson.dumps(notification.to_wire())


def ack_frame(request_id: object, notification_id: str, seq: int) -> bytes:
    return reply_frame(request_id, notificationId=notification_id, seq=seq)


def reply_frame(request_id: object, **fields: object) -> bytes:
    """An ``ack``: the action was carried out; ``fields`` say what it did."""
    frame: JSONObject = {"type": "ack", **fields}
    if request_id is not None:
        frame["requestId"] = request_id
    return orjson.dumps(frame)


def token_expiring_frame(expires_at: int, now: float) -> bytes:
    """Sent ``--token-expiry-notice`` seconds before the connection's token
    expires: refresh it (``refreshToken``) or be closed with 4401 at ``expiresAt``."""
    left = max(0, round(expires_at - now))
    return orjson.dumps({"type": "tokenExpiring", "expiresAt": expires_at, "in": left})


def pong_frame(request_id: object) -> bytes:
    return orjson.dumps({"type": "pong", "requestId": request_id})


def error_frame(code: str, message: str, request_id: object = None) -> bytes:
    frame: JSONObject = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["requestId"] = request_id
    return orjson.dumps(frame)


def error_frame_for(error: ProtocolError) -> bytes:
    return error_frame(error.code, error.message, error.request_id)


def caught_up_frame(seq: int, *, complete: bool, topics: dict[str, int] | None = None) -> bytes:
    frame: JSONObject = {"type": "caughtUp", "seq": seq, "complete": complete}
    if topics is not None:
        frame["topics"] = topics
    return orjson.dumps(frame)
