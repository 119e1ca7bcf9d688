"""Row shapes shared by the SQLite inbox and topic queries."""

from __future__ import annotations

from typing import Any

import orjson

from tidings.core.inbox import InboxFilter
from tidings.core.models import InboxItem, Notification
from tidings.core.publish import stored_data

COLUMNS = (
    "seq, id, sender, message, data, tags, created_at, expires_at, read_at, seen_at, archived_at"
)
ALIVE = "(expires_at IS NULL OR expires_at > ?)"


def to_item(user_id: str, row: tuple[Any, ...]) -> InboxItem:
    seq, id_, sender, message, data, tags, created, expires, read, seen, archived = row
    notification = Notification(
        id=id_,
        user_id=user_id,
        seq=seq,
        message=message,
        created_at=created,
        sender=sender,
        data=stored_data(data, id_),
        tags=tuple(orjson.loads(tags)) if tags else (),
        expires_at=expires,
    )
    return InboxItem(
        notification, read_at=read, seen_at=seen, archived_at=archived, user_id=user_id
    )


def filter_clauses(f: InboxFilter, now: int) -> tuple[list[str], list[Any]]:
    clauses: list[str] = [ALIVE]
    params: list[Any] = [now]
    if f.read is not None:
        clauses.append("read_at IS NOT NULL" if f.read else "read_at IS NULL")
    if f.seen is not None:
        clauses.append("seen_at IS NOT NULL" if f.seen else "seen_at IS NULL")
    if f.archived == "exclude":
        clauses.append("archived_at IS NULL")
    elif f.archived == "only":
        clauses.append("archived_at IS NOT NULL")
    if f.tags:
        marks = ",".join("?" * len(f.tags))
        clauses.append(f"EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ({marks}))")
        params.extend(f.tags)
    if f.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(f.created_after)
    if f.created_before is not None:
        clauses.append("created_at < ?")
        params.append(f.created_before)
    return clauses, params
