"""Value objects of the notification model."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSONObject = dict[str, Any]


def iso_ms(ms: int) -> str:
    """Unix milliseconds as the wire's timestamp, e.g. ``2026-11-27T10:00:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    """``2026-11-27T10:00:00``: the same for every notification of that second."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()[:19]


@dataclass(frozen=True, slots=True)
class Notification:
    """One stored inbox item: notification ``id`` as received by ``user_id`` at ``seq``."""

    id: str
    user_id: str
    seq: int
    message: str
    created_at: int
    """Unix milliseconds."""
    sender: str | None = None
    data: JSONObject | None = None
    tags: tuple[str, ...] = ()
    expires_at: int | None = None
    """Unix milliseconds after which it is neither listed, counted nor replayed."""
    topic: str | None = None
    """Set for a topic notification: stored once, ``seq`` is the topic's and
    ``user_id`` is empty (the frame is the same for every subscriber)."""

    def to_wire(self) -> JSONObject:
        """The ``notification`` frame: the seed's two fields plus the stream position."""
        if self.topic is not None:
            return {
                "type": "notification",
                "notificationId": self.id,
                "seq": self.seq,
                "topic": self.topic,
                "userId": None,
                "sender": self.sender,
                "message": self.message,
                "data": self.data if self.data is not None else {},
                "tags": list(self.tags),
                "createdAt": iso_ms(self.created_at),
                "expiresAt": _iso_or_none(self.expires_at),
            }
        return {
            "type": "notification",
            "notificationId": self.id,
            "seq": self.seq,
            "userId": self.user_id,
            "sender": self.sender,
            "message": self.message,
            "data": self.data if self.data is not None else {},
            "tags": list(self.tags),
            "createdAt": iso_ms(self.created_at),
            "expiresAt": iso_ms(self.expires_at) if self.expires_at is not None else None,
        }


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A notification as one user's inbox holds it, with that user's read state."""

    notification: Notification
    read_at: int | None = None
    seen_at: int | None = None
    archived_at: int | None = None
    user_id: str | None = None
    """Whose inbox holds it (for a topic item, the notification has no user)."""

    def to_json(self) -> JSONObject:
        n = self.notification
        return {
            "notificationId": n.id,
            "userId": self.user_id or n.user_id,
            "topic": n.topic,
            "seq": n.seq,
            "sender": n.sender,
            "message": n.message,
            "data": n.data if n.data is not None else {},
            "tags": list(n.tags),
            "createdAt": iso_ms(n.created_at),
            "expiresAt": _iso_or_none(n.expires_at),
            "readAt": _iso_or_none(self.read_at),
            "seenAt": _iso_or_none(self.seen_at),
            "archivedAt": _iso_or_none(self.archived_at),
        }


def _iso_or_none(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


@dataclass(frozen=True, slots=True)
class Counts:
    """A user's whole-inbox counts; kept in the same transaction as every change.

    ``total``: not archived, not expired. ``unread``: also not read.
    ``unseen``: also not seen.
    """

    total: int = 0
    unread: int = 0
    unseen: int = 0

    def to_json(self) -> JSONObject:
        return {"total": self.total, "unread": self.unread, "unseen": self.unseen}


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One notification for one or more recipients, stored in one transaction.

    Every recipient's inbox item gets the same ``id`` and the next ``seq`` of
    that recipient's stream.
    """

    id: str
    recipients: tuple[str, ...]
    message: str
    created_at: int
    sender: str | None = None
    data: JSONObject | None = None
    idempotency_key: str | None = None
    """Scoped to ``sender``: a repeat within the retention window stores nothing."""
    fingerprint: str = ""
    """Digest of the request body, to tell a true retry from a reused key."""
    tags: tuple[str, ...] = ()
    expires_at: int | None = None
    topic: str | None = None
    """Publish to this topic (stored once in its stream) instead of ``recipients``."""

    def notification_for(self, user_id: str, seq: int) -> Notification:
        return Notification(
            id=self.id,
            user_id=user_id,
            seq=seq,
            message=self.message,
            created_at=self.created_at,
            sender=self.sender,
            data=self.data,
            tags=self.tags,
            expires_at=self.expires_at,
        )

    def topic_notification(self, seq: int) -> Notification:
        """The one notification a topic publish stores: no user, the topic's seq."""
        assert self.topic is not None
        return dataclasses.replace(self.notification_for("", seq), topic=self.topic)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a committed publish assigned: one ``seq`` per recipient."""

    id: str
    seqs: tuple[tuple[str, int], ...]
    created_at: int
    duplicate: bool = False
    """True when an earlier request with the same idempotency key answered this one."""
    stored: tuple[Notification, ...] = field(default=(), compare=False)
    """The notifications this call stored (empty for a duplicate): what to push."""
    topic: str | None = None
    topic_seq: int = 0
    """For a topic publish: the seq it got in the topic's stream."""


@dataclass(frozen=True, slots=True)
class StreamPage:
    """A slice of a user's stream read in one snapshot."""

    items: list[Notification]
    head: int
    """The highest seq ever assigned in this stream at the time of the read."""
    trimmed: int
    """Every seq at or below this was removed by retention; 0 if none."""


@dataclass(frozen=True, slots=True)
class Publication:
    """What the broker carries between nodes: a ready-to-send frame and its position."""

    user_id: str
    seq: int
    """The frame's position in the user's stream; 0 for an event outside the
    stream (an inbox state change), delivered to every connection as is."""
    payload: bytes
    """The encoded JSON frame, built once and written as-is to every socket."""
    topic: str | None = None
    """With ``seq`` > 0: a notification in this topic's stream (``user_id`` is
    empty), for every subscriber. With ``seq`` 0: ``user_id`` subscribed to or
    left this topic (the payload says which)."""
