"""What both stores build the same way around a committed batch: results, the
first answer an idempotency key keeps, the result its repeats get, the clock."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from tidings.core.errors import IdempotencyConflict
from tidings.core.models import Notification, PublishRequest, PublishResult


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def committed(
    request: PublishRequest,
    seqs: list[tuple[str, int]],
    stored: tuple[Notification, ...],
    topic_seq: int,
) -> PublishResult:
    """The result of a request stored in this batch."""
    return PublishResult(
        id=request.id,
        seqs=tuple(seqs),
        created_at=request.created_at,
        stored=stored,
        topic=request.topic,
        topic_seq=topic_seq,
    )


def first_answer(result: PublishResult) -> bytes:
    """What an idempotency key keeps of its first result (the ``response`` column)."""
    return orjson.dumps(
        {
            "id": result.id,
            "seqs": list(result.seqs),
            "createdAt": result.created_at,
            "topic": result.topic,
            "topicSeq": result.topic_seq,
        }
    )


def repeat(result: PublishResult) -> PublishResult:
    """What a repeat of a request stored in this same batch gets: its result,
    marked duplicate, storing nothing."""
    return dataclasses.replace(result, duplicate=True, stored=())


def duplicate(response: bytes | str) -> PublishResult:
    """The first result of an idempotent request, as its repeats get it."""
    answer: dict[str, Any] = orjson.loads(response)
    return PublishResult(
        id=answer["id"],
        seqs=tuple((u, s) for u, s in answer["seqs"]),
        created_at=answer["createdAt"],
        duplicate=True,
        topic=answer.get("topic"),
        topic_seq=answer.get("topicSeq", 0),
    )


def conflict(request: PublishRequest) -> IdempotencyConflict:
    """The same key with another fingerprint: a different request."""
    return IdempotencyConflict(
        f"idempotency key {request.idempotency_key!r} was used for a different request"
    )
