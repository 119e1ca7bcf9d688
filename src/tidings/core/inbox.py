"""Inbox queries, filters, marks and cursors: values and their validation, no I/O.

A cursor is opaque to clients: it carries the last notification id of a page,
bound to the user and the query by an HMAC, so a cursor from another user, for
another filter or tampered with is refused instead of silently misapplied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tidings.core.errors import BadRequest

ARCHIVED_MODES = ("exclude", "include", "only")
MARK_ACTIONS = ("read", "unread", "seen", "archive", "unarchive")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_TAGS = 16
MAX_TAG_CHARS = 64
MAX_IDS = 1000
_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
EVERYONE = "everyone"
"""The built-in topic every user is in: a broadcast is one row and one frame."""


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Which inbox items to list or count. Archived items are left out by default."""

    read: bool | None = None
    seen: bool | None = None
    archived: str = "exclude"
    tags: tuple[str, ...] = ()
    """Items carrying any of these tags."""
    created_after: int | None = None
    created_before: int | None = None

    def __post_init__(self) -> None:
        if self.archived not in ARCHIVED_MODES:
            raise BadRequest(
                f"archived must be one of {', '.join(ARCHIVED_MODES)}, not {self.archived!r}"
            )
        check_tags(self.tags)

    @classmethod
    def from_json(cls, raw: object) -> InboxFilter:
        """A filter from a JSON object (the body of a counts request)."""
        if not isinstance(raw, dict):
            raise BadRequest("a filter must be a JSON object")
        unknown = set(raw) - {"read", "seen", "archived", "tags", "createdAfter", "createdBefore"}
        if unknown:
            raise BadRequest(f"unknown filter field {sorted(unknown)[0]!r}")
        for name in ("read", "seen"):
            if raw.get(name) is not None and not isinstance(raw[name], bool):
                raise BadRequest(f"{name} must be true, false or null")
        tags = raw.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadRequest("tags must be a list of strings")
        archived = raw.get("archived", "exclude")
        if not isinstance(archived, str):
            raise BadRequest("archived must be a string")
        return cls(
            read=raw.get("read"),
            seen=raw.get("seen"),
            archived=archived,
            tags=tuple(tags),
            created_after=parse_time(raw.get("createdAfter"), "createdAfter"),
            created_before=parse_time(raw.get("createdBefore"), "createdBefore"),
        )

    def kept_count(self) -> str | None:
        """``total``, ``unread`` or ``unseen`` when this filter is one of the
        counts every store keeps (so it is read, not counted); else None."""
        if self.archived != "exclude" or self.tags:
            return None
        if self.created_after is not None or self.created_before is not None:
            return None
        return {(None, None): "total", (False, None): "unread", (None, False): "unseen"}.get(
            (self.read, self.seen)
        )

    def digest(self) -> str:
        return hashlib.sha256(
            orjson.dumps(
                [
                    self.read,
                    self.seen,
                    self.archived,
                    sorted(self.tags),
                    self.created_after,
                    self.created_before,
                ]
            )
        ).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class InboxQuery:
    filter: InboxFilter
    newest_first: bool = True
    after: str | None = None
    """Continue after this notification id (decoded from the cursor)."""
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be 1 to {MAX_LIMIT}, not {self.limit!r}")


@dataclass(frozen=True, slots=True)
class Mark:
    """Change the state of some items: by ``ids``, or everything with an id <= ``up_to``."""

    action: str
    ids: tuple[str, ...] | None = None
    up_to: str | None = None

    def __post_init__(self) -> None:
        if self.action not in MARK_ACTIONS:
            raise BadRequest(f"unknown mark action {self.action!r}")
        if (self.ids is None) == (self.up_to is None):
            raise BadRequest("give exactly one of ids and upTo")
        if self.ids is not None:
            if len(self.ids) > MAX_IDS:
                raise BadRequest(f"at most {MAX_IDS} ids per call")
            for value in self.ids:
                check_id(value)
        if self.up_to is not None:
            check_id(self.up_to)

    def change(self) -> dict[str, Any]:
        """How the change is described to the user's connections."""
        if self.ids is not None:
            return {"action": self.action, "ids": list(self.ids)}
        return {"action": self.action, "upTo": self.up_to}


def check_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"not a notification id: {value!r:.40}")
    return value


def check_topic(value: object) -> str:
    if not isinstance(value, str) or not _TOPIC.match(value):
        raise BadRequest(
            f"a topic is 1 to 128 letters, digits and _ . : - (starting with a letter or digit), "
            f"not {value!r:.60}"
        )
    return value


def check_tags(tags: object) -> tuple[str, ...]:
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise BadRequest("tags must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not 0 < len(tag) <= MAX_TAG_CHARS:
            raise BadRequest(f"a tag must be 1 to {MAX_TAG_CHARS} characters, not {tag!r:.80}")
    return tuple(tags)


def parse_time(value: object, name: str) -> int | None:
    """An ISO 8601 timestamp (or Unix milliseconds) as Unix milliseconds."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if stamp.tzinfo is None:
                raise BadRequest(f"{name} needs a time zone (e.g. a trailing Z), got {value!r}")
            return int(stamp.timestamp() * 1000)
    raise BadRequest(f"{name} must be an ISO 8601 timestamp, not {value!r:.60}")


class CursorCodec:
    """Signs and checks page cursors with a key derived from the server secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"tidings-cursor:" + secret.encode()).digest()

    def encode(self, user_id: str, query: InboxQuery, last_id: str) -> str:
        body = orjson.dumps([user_id, last_id, query.newest_first, query.filter.digest()])
        tag = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(tag + body).decode().rstrip("=")

    def decode(self, cursor: str, user_id: str, *, newest_first: bool, filter: InboxFilter) -> str:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            tag, body = raw[:12], raw[12:]
            valid = hmac.compare_digest(
                tag, hmac.new(self._key, body, hashlib.sha256).digest()[:12]
            )
            owner, last_id, order, digest = orjson.loads(body) if valid else (None,) * 4
        except (ValueError, orjson.JSONDecodeError):
            valid = False
        if not valid:
            raise BadRequest("invalid cursor")
        if owner != user_id:
            raise BadRequest("this cursor belongs to another inbox")
        if order != newest_first or digest != filter.digest():
            raise BadRequest("this cursor was made for another order or filter")
        return check_id(last_id)
