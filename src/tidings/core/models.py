"""Value objects of the notification model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSONObject = dict[str, Any]


def iso_ms(ms: int) -> str:
    """Unix milliseconds as the wire's timestamp, e.g. ``2026-11-27T10:00:00.123Z``."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


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

    def to_wire(self) -> JSONObject:
        """The ``notification`` frame: the seed's two fields plus the stream position."""
        return {
            "type": "notification",
            "notificationId": self.id,
            "seq": self.seq,
            "userId": self.user_id,
            "sender": self.sender,
            "message": self.message,
            "data": self.data if self.data is not None else {},
            "createdAt": iso_ms(self.created_at),
        }


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

    def notification_for(self, user_id: str, seq: int) -> Notification:
        return Notification(
            id=self.id,
            user_id=user_id,
            seq=seq,
            message=self.message,
            created_at=self.created_at,
            sender=self.sender,
            data=self.data,
        )


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
    payload: bytes
    """The encoded JSON frame, built once and written as-is to every socket."""
