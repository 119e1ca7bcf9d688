"""What a publish may carry: one validator for every way in, before anything is stored.

HTTP, the WebSocket ``sendNotification`` action and the AWS routes all end
in ``new_request``, so a notification that passes here can be stored,
encoded into every frame and answer that embeds it, and read back: a
request refused here leaves nothing behind, and nothing stored can make a
later read fail. ``stored_data`` is the other side of the same rule, for
rows written before it (or by hand): a row whose data cannot be shown is
shown without it, and logged, instead of failing the whole page or replay.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tidings.core.errors import BadRequest
from tidings.core.ids import new_id
from tidings.core.inbox import check_tags, check_topic
from tidings.core.models import JSONObject, PublishRequest

log = logging.getLogger("tidings.publish")

MAX_DATA_DEPTH = 32
"""Levels of nesting allowed in ``data`` (the object itself is level 1). Frames
and answers embed ``data`` a few levels down, and the JSON encoder stops at
254 levels: far below that, so every answer that carries it can be encoded."""

MAX_RECIPIENTS = 10_000

MAX_TIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant the wire's timestamps can show."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on client input; each one answered with ``bad_request`` when passed."""

    max_message_chars: int = 32_768
    max_data_bytes: int = 16_384
    max_user_id_chars: int = 256
    max_key_chars: int = 256


DEFAULT_LIMITS = Limits()


def check_text(value: str, name: str) -> str:
    """Refuse text no store can keep: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise BadRequest(f"{name} contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{name} contains unpaired surrogates") from None
    return value


def check_data(
    data: object, limits: Limits = DEFAULT_LIMITS, *, request_id: object = None
) -> JSONObject | None:
    """The optional free-form ``data`` object: JSON-encodable, at most
    ``MAX_DATA_DEPTH`` levels deep and ``limits.max_data_bytes`` encoded."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BadRequest("data must be a JSON object", request_id=request_id)
    try:
        encoded = orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        problem = f"nested deeper than {MAX_DATA_DEPTH} levels" if _too_deep(data) else str(exc)
        raise BadRequest(f"data cannot be stored: {problem}", request_id=request_id) from None
    if len(encoded) > limits.max_data_bytes:
        raise BadRequest(
            f"data is {len(encoded)} bytes encoded, the limit is {limits.max_data_bytes}",
            request_id=request_id,
        )
    if _may_be_deep(encoded) and _too_deep(data):
        raise BadRequest(
            f"data cannot be stored: nested deeper than {MAX_DATA_DEPTH} levels",
            request_id=request_id,
        )
    if b"null" in encoded and _has_non_finite(data):
        # The encoder writes NaN and Infinity as null: refused, not changed.
        raise BadRequest(
            "data cannot be stored: NaN and Infinity are not JSON", request_id=request_id
        )
    return data


def stored_data(raw: str | bytes | None, notification_id: str) -> JSONObject | None:
    """A stored row's ``data``, or None (logged) when it cannot be decoded or
    shown: one bad row must not fail the inbox page or replay it is part of."""
    if raw is None:
        return None
    data, problem = _decode(raw)
    if problem is not None:
        log.error(
            "stored data cannot be shown; shown without it",
            extra={"id": notification_id, "reason": problem},
        )
        return None
    return data


def unshowable(raw: str | bytes) -> bool:
    """Whether a stored ``data`` breaks the rule ``check_data`` enforces now
    (for the upgrade that removes such data from rows written before it)."""
    return _decode(raw)[1] is not None


def _decode(raw: str | bytes) -> tuple[JSONObject | None, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    if _may_be_deep(raw) and _too_deep(data):
        return None, f"nested deeper than {MAX_DATA_DEPTH} levels"
    return data, None


def _may_be_deep(encoded: str | bytes) -> bool:
    """Cheap pre-check: nesting needs an opening bracket per level."""
    if isinstance(encoded, str):
        return encoded.count("{") + encoded.count("[") > MAX_DATA_DEPTH
    return encoded.count(b"{") + encoded.count(b"[") > MAX_DATA_DEPTH


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DATA_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def fingerprint(
    recipients: Sequence[str],
    message: str,
    data: JSONObject | None,
    tags: Sequence[str] = (),
    expires_at: int | None = None,
) -> str:
    """Digest of what a publish asks for: tells a retry from a reused key."""
    body = {
        "to": sorted(recipients),
        "message": message,
        "data": data,
        "tags": list(tags),
        "expiresAt": expires_at,
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def new_request(
    recipients: Sequence[str],
    message: str,
    *,
    now_ms: int,
    data: object = None,
    sender: str | None = None,
    idempotency_key: str | None = None,
    tags: object = (),
    expires_at: int | None = None,
    topic: str | None = None,
    default_ttl_ms: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> PublishRequest:
    """Check every field of a publish and build what the store takes, or raise
    ``BadRequest`` naming the first field that cannot be stored."""
    unique = tuple(dict.fromkeys(recipients))
    if topic is not None:
        if unique:
            raise BadRequest("give recipients or a topic, not both")
        check_topic(topic)
    elif not unique:
        raise BadRequest("no recipients")
    if len(unique) > MAX_RECIPIENTS:
        raise BadRequest(f"at most {MAX_RECIPIENTS} recipients, got {len(unique)}")
    for user in unique:
        if not isinstance(user, str) or not 0 < len(user) <= limits.max_user_id_chars:
            raise BadRequest(
                f"a userId must be a string of 1 to {limits.max_user_id_chars} characters"
            )
        check_text(user, "userId")
    if not isinstance(message, str):
        raise BadRequest("message must be a string")
    if len(message) > limits.max_message_chars:
        raise BadRequest(
            f"message is {len(message)} characters, the limit is {limits.max_message_chars}"
        )
    check_text(message, "message")
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= limits.max_key_chars:
            raise BadRequest(f"idempotencyKey must be 1 to {limits.max_key_chars} characters")
        check_text(idempotency_key, "idempotencyKey")
    checked_tags = check_tags(tags)
    for tag in checked_tags:
        check_text(tag, "tag")
    checked_data = check_data(data, limits)
    if expires_at is None and default_ttl_ms:
        expires_at = now_ms + default_ttl_ms
    elif expires_at is not None:
        if expires_at <= now_ms:
            raise BadRequest("expiresAt is in the past")
        if expires_at > MAX_TIME_MS:
            raise BadRequest("expiresAt is after 9999-12-31T23:59:59.999Z")
    return PublishRequest(
        id=new_id(),
        recipients=unique,
        message=message,
        created_at=now_ms,
        sender=sender,
        data=checked_data,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(
            unique or [f"#{topic}"], message, checked_data, checked_tags, expires_at
        )
        if idempotency_key
        else "",
        tags=checked_tags,
        expires_at=expires_at,
        topic=topic,
    )
