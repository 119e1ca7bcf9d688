"""Migration 5 on both stores: ``data`` that no answer could carry (nested
deeper than ``MAX_DATA_DEPTH``, stored before such data was refused) is
dropped, keeping the rest of each row. Only rows with more opening brackets
than the depth allowed are decoded; the stores run the SQL, this decides."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tidings.core.publish import MAX_DATA_DEPTH, unshowable

log = logging.getLogger("tidings.store")

STREAM_TABLES = (("notifications", "user_id"), ("topic_notifications", "topic"))
"""Each table holding ``data``, with the column that owns a stream."""

SUSPECTS = MAX_DATA_DEPTH
"""More opening brackets than this: the row's data may be too deep."""


def unshowable_keys(rows: Iterable[tuple[Any, int, str]]) -> list[tuple[Any, int]]:
    """``(owner, seq)`` of the ``(owner, seq, data)`` rows whose data cannot be shown."""
    return [(owner, seq) for owner, seq, data in rows if unshowable(data)]


def report(repaired: int) -> None:
    if repaired:
        log.warning("removed data that could not be shown", extra={"notifications": repaired})
